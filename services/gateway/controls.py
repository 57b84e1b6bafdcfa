"""What a person may do to tasks from Discord or the console: run now, pause, resume.

Both front ends call these, so a run started from Discord and one started from the console are
the same manual `RunRequest` (docs/contracts.md: run id `<task>.m<epoch ms>`, used as the
JetStream message id too), and a pause is the same `pause.<task>` record the scheduler honours.
"""

from __future__ import annotations

from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError

from koda.shared.bus import Bus
from koda.shared.configfile import read_config_text
from koda.shared.errors import ConfigError, KodaError
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest, TaskPause, new_run_id
from koda.shared.tasks import TasksFile, parse_tasks


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


def _known(home: HomeLayout, task: str) -> None:
    tasks, _ = load_tasks_or_none(home)
    if tasks is None or tasks.get(task) is None:
        raise UnknownTask(task)


async def trigger(bus: Bus, home: HomeLayout, task: str, who: str, *, prompt: str | None = None,
                  reply_to: str | None = None, trigger: str = "manual") -> RunRequest:
    """Queue a run of `task` now; returns the request (its run id tells the person what to watch)."""
    if trigger == "manual":
        _known(home, task)
    now = datetime.now(UTC)
    run_id = new_run_id(task, "chat" if trigger == "chat" else "manual", now)
    request = RunRequest(task=task, run_id=run_id, scheduled_for=now, trigger=trigger,  # type: ignore[arg-type]
                         requested_by=who, prompt=prompt, reply_to=reply_to)
    await bus.publish(f"koda.runs.{task}", request, msg_id=run_id)
    await bus.emit(bus.event("run.requested", f"{task} queued by {who}", task=task, run_id=run_id,
                             data={"trigger": trigger, "requested_by": who}))
    return request


async def pause(bus: Bus, home: HomeLayout, task: str, who: str, reason: str = "") -> TaskPause:
    """Pause a task: the scheduler fires nothing for it until it is resumed."""
    _known(home, task)
    record = TaskPause(task=task, paused_by=who, reason=reason)
    await bus.kv["scheduler"].put(f"pause.{task}", record.to_bytes())
    await bus.emit(bus.event("task.paused", f"{task} paused by {who}", task=task,
                             data={"paused_by": who, "reason": reason}))
    return record


async def resume(bus: Bus, task: str, who: str) -> bool:
    """Resume a paused task; False if it was not paused."""
    if await paused(bus, task) is None:
        return False
    await bus.kv["scheduler"].delete(f"pause.{task}")
    await bus.emit(bus.event("task.resumed", f"{task} resumed by {who}", task=task,
                             data={"resumed_by": who}))
    return True


async def paused(bus: Bus, task: str) -> TaskPause | None:
    try:
        entry = await bus.kv["scheduler"].get(f"pause.{task}")
    except KeyNotFoundError:
        return None
    return TaskPause.from_bytes(entry.value) if entry.value else None
