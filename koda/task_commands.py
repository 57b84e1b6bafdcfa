"""`koda run TASK [--wait]` and `koda tasks`: start a task by hand, and see every task at a glance."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any


def _settings(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from koda.natsauth import for_cli
    from koda.shared.settings import KodaSettings

    return for_cli(KodaSettings(**({"home": Path(args.home)} if getattr(args, "home", None) else {})))


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
    settings = _settings(args)
    tasks = _load(settings)
    if tasks is None:
        return 1
    if tasks.get(args.task) is None:
        known = ", ".join(t.id for t in tasks.tasks) or "none"
        print(f"no task {args.task!r} in tasks.json (known: {known})", file=sys.stderr)
        return 2
    return asyncio.run(_run(settings, args.task, args.wait, args.timeout))


async def _run(settings: Any, task: str, wait: bool, timeout: float) -> int:
    from koda.shared.bus import Bus
    from koda.shared.errors import BusError
    from koda.shared.messages import Event, RunRequest

    try:
        bus = await Bus.connect(settings, "cli", timeout=5)
    except BusError as exc:
        print(f"{exc}; is the stack up (`koda up -d`)?", file=sys.stderr)
        return 1
    try:
        now = datetime.now(UTC)
        run_id = f"{task}.m{round(now.timestamp() * 1000)}"
        finished: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Any) -> None:
            event = Event.from_bytes(msg.data)
            if event.run_id == run_id and not finished.done():
                finished.set_result(event)

        if wait:  # listen before publishing, so even an instant run is not missed
            for end in ("finished", "failed"):  # done, or any other outcome
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
        await bus.publish(f"koda.runs.{task}", request, msg_id=run_id)
        print(f"queued {run_id}", flush=True)
        if not wait:
            return 0
        try:
            event = await asyncio.wait_for(finished, timeout)
        except TimeoutError:
            print(f"{run_id}: no outcome within {timeout:.0f}s; it may still be running "
                  f"(see `koda tasks`)", file=sys.stderr)
            return 124
        print(_outcome_line(run_id, event.data))
        for key in ("result", "error"):
            if event.data.get(key):
                print(event.data[key])
        return 0 if event.data.get("outcome") == "done" else 1
    finally:
        await bus.close()


def _outcome_line(run_id: str, data: dict[str, Any]) -> str:
    bits = [str(data.get("outcome", "unknown"))]
    if data.get("turns") is not None:
        bits.append(f"{data['turns']} turns")
    if data.get("cost_usd") is not None:
        bits.append(f"${float(data['cost_usd']):.4f}")
    if data.get("duration_s") is not None:
        bits.append(f"{float(data['duration_s']):.1f}s")
    return f"{run_id}: " + ", ".join(bits)


# --- koda tasks -------------------------------------------------------------------------------

def cmd_tasks(args: argparse.Namespace) -> int:
    settings = _settings(args)
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
    """Per task: paused reason, and the newest run in the ledger. None when NATS is away."""
    from koda.shared.bus import Bus
    from koda.shared.messages import RunLedgerEntry, TaskPause

    try:
        bus = await Bus.connect(settings, "cli", timeout=2, ensure=False)
    except Exception:
        return None
    state: dict[str, dict[str, Any]] = {}
    try:
        for bucket, pattern in (("scheduler", "pause.*"), ("runs", ">")):
            kv = await bus.js.key_value(bucket)
            watcher = await kv.watch(pattern, ignore_deletes=True)
            async for entry in watcher:
                if entry is None:
                    break
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
    return {"task": task.id, "schedule": schedule, "next": next_text, "last": last_text,
            "enabled": task.enabled, "next_fire": nxt.isoformat() if nxt else None}


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("TASK", "task"), ("SCHEDULE", "schedule"), ("NEXT FIRE", "next"), ("LAST OUTCOME", "last")]
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
    return {"run": cmd_run, "tasks": cmd_tasks}
