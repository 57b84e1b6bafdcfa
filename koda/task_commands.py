"""`koda run TASK [--wait]` and `koda tasks`: start a task by hand, and see every task at a glance."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from koda.cli import connect_bus, settings_from

if TYPE_CHECKING:
    from koda.shared.events import RunEnded


def _load(settings: Any) -> Any:
    """tasks.json, or None after printing its problems (file:line: field: message)."""
    from koda.shared.errors import ConfigError
    from koda.shared.home import HomeLayout
    from koda.shared.tasks import load_tasks

    try:
        return load_tasks(HomeLayout(settings.expanded_home()).tasks)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


# --- koda run ---------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tasks = _load(settings)
    if tasks is None:
        return 1
    if tasks.get(args.task) is None:
        known = ", ".join(t.id for t in tasks.tasks) or "none"
        print(f"no task {args.task!r} in tasks.json (known: {known})", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args.task, args.wait, args.timeout, tasks.get(args.task)))


async def _run(settings: Any, task: str, wait: bool, timeout: float, spec: Any = None) -> int:
    from koda.shared.bus import permission_violation
    from koda.shared.events import BadEvent, RunEnded, RunRetrying
    from koda.shared.messages import Event, RunRequest, new_run_id

    bus = await connect_bus(settings)
    if bus is None:
        return 1
    try:
        now = datetime.now(UTC)
        run_id = new_run_id(task, "manual", now)
        finished: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Any) -> None:
            event = Event.from_bytes(msg.data)
            if event.run_id != run_id or finished.done():
                return
            if event.event == "run.retrying":  # "attempt 1/3 failed: reason; next in 120 s"
                try:
                    note = RunRetrying.of(event).note
                except BadEvent:
                    note = ""
                print(f"{run_id}: {note or event.summary}", flush=True)
                return
            finished.set_result(event)

        if wait:  # listen before publishing, so even an instant run is not missed
            for end in ("finished", "failed", "retrying"):  # done, any other outcome, a retry
                await bus.nc.subscribe(f"koda.events.run.{end}", cb=on_event)
            await bus.nc.flush()
        try:
            paused = await bus.kv["scheduler"].get(f"pause.{task}")
        except Exception:
            paused = None
        if paused is not None and paused.value:
            print(f"note: {task} is paused for its schedule; this manual run goes ahead")
        request = RunRequest(task=task, run_id=run_id, scheduled_for=now, trigger="manual",
                             requested_by=f"koda run ({getpass.getuser()})")
        try:
            await bus.publish(f"koda.runs.{task}", request, msg_id=run_id)
        except Exception as exc:  # nats-py's TimeoutError and NoRespondersError, among others
            denied = permission_violation(bus)
            if denied:
                print(f"NATS refused the run request: {denied}. The NATS user "
                      f"{settings.nats_user or '(none)'} may not queue runs; run this where "
                      "the gateway's user is (`docker compose exec gateway koda run ...`).",
                      file=sys.stderr)
            else:
                print(f"could not queue {run_id} on koda.runs.{task}: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"queued {run_id}", flush=True)
        if not wait:
            return 0
        from koda.progress import Progress

        for bucket in ("runs", "limits"):
            bus.kv.setdefault(bucket, await bus.js.key_value(bucket))
        progress = Progress(settings, bus, run_id, spec)
        deadline = asyncio.get_running_loop().time() + timeout
        while not finished.done():
            if asyncio.get_running_loop().time() > deadline:
                print(f"{run_id}: no outcome within {_human(timeout)}; it may still be running "
                      f"(`koda show {run_id} -f` follows it)", file=sys.stderr)
                return 124
            await asyncio.wait({finished}, timeout=1.0)
            await progress.poll()
        event = finished.result()
        await progress.poll()
        try:
            ended = RunEnded.of(event)
        except BadEvent as exc:
            print(f"{run_id}: {event.event}: {event.summary} (its data is unreadable: {exc})")
            return 1
        print(_outcome_line(run_id, ended))
        for text in (ended.result, ended.error):
            if text:
                print(text)
        return 0 if ended.done else 1
    finally:
        await bus.close()


def _outcome_line(run_id: str, ended: RunEnded) -> str:
    bits = [ended.outcome]
    if ended.turns is not None:
        bits.append(f"{ended.turns} turns")
    if ended.cost_usd is not None:
        bits.append(f"${ended.cost_usd:.4f}")
    if ended.duration_s is not None:
        bits.append(_human(ended.duration_s))
    if (ended.attempts or 1) > 1:
        bits.append(f"attempt {ended.attempt}/{ended.attempts}")
    if ended.cause:
        bits.append(f"cause: {ended.cause}")
    return f"{run_id}: " + ", ".join(bits)


def _human(seconds: float) -> str:
    from koda.shared.runs_view import human_duration

    return human_duration(seconds)


# --- koda tasks -------------------------------------------------------------------------------

def cmd_tasks(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tasks = _load(settings)
    if tasks is None:
        return 1
    state = asyncio.run(_bus_state(settings))
    rows = [_row(task, tasks.timezone, state) for task in tasks.tasks]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(_table(rows))
        if state is None:
            print("(the bus is not reachable: pauses and last outcomes unknown)")
    return 0


async def _bus_state(settings: Any) -> dict[str, dict[str, Any]] | None:
    """Per task: paused reason, the newest run in the ledger and the last admission decision.
    None when NATS is away."""
    from koda.shared.messages import AdmissionRecord, RunLedgerEntry, TaskPause

    bus = await connect_bus(settings, timeout=2, ensure=False, quiet=True)
    if bus is None:
        return None
    state: dict[str, dict[str, Any]] = {}
    try:
        for bucket, pattern in (("scheduler", "pause.*"), ("runs", ">"), ("limits", "admission.*")):
            kv = await bus.js.key_value(bucket)
            watcher = await kv.watch(pattern, ignore_deletes=True)
            async for entry in watcher:
                if entry is None:
                    break
                if bucket == "limits":
                    admission = AdmissionRecord.from_bytes(entry.value)
                    state.setdefault(admission.task, {})["admission"] = admission
                    continue
                if bucket == "scheduler":
                    pause = TaskPause.from_bytes(entry.value)
                    state.setdefault(pause.task, {})["paused"] = pause.reason or pause.paused_by
                    continue
                run = RunLedgerEntry.from_bytes(entry.value)
                last = state.setdefault(run.task, {}).get("last")
                if last is None or run.updated_at > last.updated_at:
                    state[run.task]["last"] = run
            await watcher.stop()
    except Exception:
        return None
    finally:
        await bus.close()
    return state


def _row(task: Any, default_zone: str, state: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    from koda.shared import cron
    from koda.shared.cron_words import describe

    zone_name = task.timezone or default_zone
    spec = task.cron_spec()
    info = (state or {}).get(task.id, {})
    schedule = describe(spec, zone_name) if spec else "manual only"
    nxt = cron.next_fire(spec, datetime.now(UTC), task.zone(default_zone)) if spec else None
    if not task.enabled:
        next_text = "disabled"
    elif info.get("paused"):
        next_text = f"paused: {info['paused']}"
    elif nxt is None:
        next_text = "-"
    else:
        next_text = nxt.astimezone(task.zone(default_zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
    last = info.get("last")
    last_text = "-" if state is None else "never ran"
    if last is not None:
        last_text = f"{last.status} ({last.updated_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC, {last.run_id})"
    admission = info.get("admission")
    admission_text = "-"
    if admission is not None:  # what the worker decided last, e.g. "wait until 12:01"
        admission_text = admission.decision + (
            f" until {admission.wait_until.astimezone(UTC):%H:%M}" if admission.wait_until else "") + (
            f" ({admission.max_turns} turns{', ' + admission.model if admission.model else ''})"
            if admission.max_turns else "")
    return {"task": task.id, "schedule": schedule, "next": next_text, "last": last_text,
            "priority": task.priority, "admission": admission_text,
            "enabled": task.enabled, "next_fire": nxt.isoformat() if nxt else None}


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("TASK", "task"), ("SCHEDULE", "schedule"), ("NEXT FIRE", "next"), ("LAST OUTCOME", "last"),
               ("PRIORITY", "priority"), ("ADMISSION", "admission")]
    widths = [max([len(title)] + [len(str(r[key])) for r in rows]) for title, key in columns]
    lines = ["  ".join(title.ljust(w) for (title, _), w in zip(columns, widths, strict=True))]
    for r in rows:
        lines.append("  ".join(str(r[key]).ljust(w) for (_, key), w in zip(columns, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def register(sub: Any) -> dict[str, Any]:
    """Add `run` and `tasks` to the `koda` parser; returns their command functions."""
    p = sub.add_parser("run", help="run TASK now; --wait prints its outcome when it ends")
    p.add_argument("task")
    p.add_argument("--wait", action="store_true", help="wait for the run to end; exit 0 only if done")
    p.add_argument("--timeout", type=float, default=6 * 3600.0, help="with --wait: give up after")
    p = sub.add_parser("tasks", help="each task: schedule in words, next fire, last outcome")
    p.add_argument("--json", action="store_true")
    from koda.term import quiet_pipe

    return {"run": cmd_run, "tasks": quiet_pipe(cmd_tasks)}
