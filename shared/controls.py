"""What a person may do from Discord, the console or `koda`: run now, retry, cancel a run,
pause and resume a task (and the one writer of a task pause, which the watchdog and the
scheduler use too).

Both front ends call these, so a run started from Discord and one started from the console are
the same manual `RunRequest` (docs/contracts.md: run id `<task>.m<epoch ms>`, used as the
JetStream message id too), and a pause is the same `pause.<task>` record the scheduler honours.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.configfile import read_config_text
from koda.shared.errors import ConfigError, KodaError
from koda.shared.events import CancelRequested, RunRequested, TaskPaused, TaskResumed, TaskToggled
from koda.shared.home import HomeLayout
from koda.shared.kv_record import KVRecords
from koda.shared.lastgood import LastGood
from koda.shared.messages import RunRequest, TaskPause, new_run_id
from koda.shared.task_edit import TaskEditError
from koda.shared.task_edit import set_enabled as set_task_enabled
from koda.shared.tasks import TasksFile, parse_tasks

__all__ = ["TaskEditError", "UnknownTask"]


class UnknownTask(KodaError):
    """A task id that tasks.json does not declare."""

    def __init__(self, task: str) -> None:
        self.task = task
        super().__init__(f"no task {task!r} in tasks.json")


def load_tasks_or_none(home: HomeLayout) -> tuple[TasksFile | None, str | None]:
    """tasks.json, or None and the reason it cannot be read (shown to the person, not raised)."""
    try:
        return parse_tasks(read_config_text(home.tasks), home.tasks), None
    except ConfigError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{home.tasks}: {exc.strerror or exc}"


async def tasks_in_force(bus: Bus, home: HomeLayout, state_dir: Path
                         ) -> tuple[TasksFile | None, str | None, datetime | None]:
    """tasks.json; when it is broken, the last good version the scheduler and worker keep using
    (the `config` KV, else this service's saved copy) with the problems and when that version
    was saved. A good file read here is shared like any service's."""
    good = LastGood(home.tasks, state_dir, bus.service, parse_tasks)
    parsed = await good.current(bus.kv["config"])
    if good.error is None:
        return parsed, None, None
    saved_at = datetime.fromtimestamp(good.mtime_ns / 1e9, UTC) if parsed is not None else None
    return parsed, str(good.error), saved_at


def _known(home: HomeLayout, task: str) -> None:
    tasks, _ = load_tasks_or_none(home)
    if tasks is None or tasks.get(task) is None:
        raise UnknownTask(task)


async def trigger(bus: Bus, home: HomeLayout, task: str, who: str, *, prompt: str | None = None,
                  reply_to: str | None = None, trigger: str = "manual") -> RunRequest:
    """Queue a run of `task` now; returns the request (its run id tells the person what to watch)."""
    if trigger in ("manual", "retry"):
        _known(home, task)
    now = datetime.now(UTC)
    run_id = new_run_id(task, "chat" if trigger == "chat" else "manual", now)
    request = RunRequest(task=task, run_id=run_id, scheduled_for=now, trigger=trigger,  # type: ignore[arg-type]
                         requested_by=who, prompt=prompt, reply_to=reply_to)
    await bus.publish(f"koda.runs.{task}", request, msg_id=run_id)
    await bus.emit(bus.event("run.requested", f"{task} queued by {who}", task=task, run_id=run_id,
                             data=RunRequested(trigger=trigger, requested_by=who)))
    return request


async def cancel(bus: Bus, run_id: str, task: str | None, who: str) -> None:
    """Ask the workers to cancel a run (services/worker/cancel.py): the one holding it stops it;
    a run nobody holds is marked cancelled so it never starts. The request is in the audit log."""
    await bus.emit(bus.event("run.cancel_requested", f"{run_id}: cancel asked by {who}", task=task,
                             run_id=run_id, data=CancelRequested(requested_by=who)))


async def set_enabled(bus: Bus, home: HomeLayout, task: str, enabled: bool, who: str) -> bool:
    """Turn the task's cron fires on or off in tasks.json (the scheduler reloads it)."""
    _known(home, task)
    changed = set_task_enabled(home.tasks, task, enabled)
    if changed:
        kind = "task.enabled" if enabled else "task.disabled"
        await bus.emit(bus.event(kind, f"{task} {'enabled' if enabled else 'disabled'} by {who}",
                                 task=task, data=TaskToggled(by=who)))
    return changed


async def pause(bus: Bus, home: HomeLayout, task: str, who: str, reason: str = "") -> TaskPause:
    """Pause a task tasks.json declares: the scheduler fires nothing for it until it is resumed."""
    _known(home, task)
    return await pause_task(bus, task, who, reason, text=f"{task} paused by {who}")


async def pause_task(bus: Bus, task: str, who: str, reason: str, *, text: str | None = None,
                     failures: int | None = None) -> TaskPause:
    """The one writer of `pause.<task>` (a person, the watchdog holding a task, the scheduler
    after N failures), with its `task.paused` event."""
    record = TaskPause(task=task, paused_by=who, reason=reason)
    await bus.kv["scheduler"].put(f"pause.{task}", record.to_bytes())
    await bus.emit(bus.event("task.paused", text or f"{task} paused: {reason}", task=task,
                             severity="warning" if who in ("scheduler", "watchdog") else "info",
                             data=TaskPaused(paused_by=who, reason=reason, failures=failures)))
    return record


async def resume(bus: Bus, task: str, who: str) -> bool:
    """Resume a paused task; False if it was not paused."""
    if await paused(bus, task) is None:
        return False
    await bus.kv["scheduler"].delete(f"pause.{task}")
    await bus.emit(bus.event("task.resumed", f"{task} resumed by {who}", task=task,
                             data=TaskResumed(resumed_by=who)))
    return True


async def paused(bus: Bus, task: str) -> TaskPause | None:
    found = await KVRecords(bus.kv["scheduler"], TaskPause).get(f"pause.{task}")
    return found.value if found else None
