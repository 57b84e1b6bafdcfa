"""Pausing (by a person, and after N consecutive failures) and hot reload of tasks.json."""

from __future__ import annotations

import json
from datetime import timedelta

from koda.shared.bus import Bus
from koda.shared.messages import Event, TaskPause
from koda.shared.settings import KodaSettings
from tests.scheduler.fake_clock import FakeClock

from .helpers import (
    at,
    events_when,
    metric,
    run_requests,
    start_scheduler,
    task,
    wait_for,
    write_tasks,
)


def finished(task_id: str, n: int, outcome: str) -> Event:
    """The event a worker emits when a run ends: run.finished when done, else run.failed."""
    kind = "run.finished" if outcome == "done" else "run.failed"
    return Event(event=kind, service="worker", task=task_id, run_id=f"{task_id}.m{n}",
                 data={"outcome": outcome, "turns": 3})


async def test_consecutive_failures_pause_a_task_and_a_paused_task_fires_nothing(
        settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task("flaky", "0 * * * *", overlap="allow", pause_after_failures=2),
                           task("steady", "0 * * * *", overlap="allow")])
    clock = FakeClock(at("2026-06-01T08:59:30+00:00"))
    running = await start_scheduler(settings, clock)
    try:
        kv = bus.kv["scheduler"]
        # failed, done, failed: never two in a row, so no pause.
        for n, outcome in enumerate(("failed", "done", "turn_cap")):
            await bus.emit(finished("flaky", n, outcome))
        await bus.emit(finished("steady", 9, "failed"))  # default threshold is 3
        await wait_for(lambda: running.service.failures is not None, 1)
        await clock.advance(timedelta(seconds=30))
        assert sorted(r.task for r in await run_requests(bus)) == ["flaky", "steady"]
        # A second failure in a row: paused, with an event that says why.
        await bus.emit(finished("flaky", 3, "failed"))
        await wait_for(lambda: "flaky" in running.service.paused.ids, 10)
        pause = TaskPause.from_bytes((await kv.get("pause.flaky")).value)
        assert pause.paused_by == "scheduler" and "2 consecutive failed runs" in pause.reason
        said = await events_when(bus, "task.paused")
        assert [e.task for e in said] == ["flaky"] and said[0].severity == "warning"
        await clock.advance(timedelta(hours=1))
        assert sorted(r.task for r in await run_requests(bus)) == ["flaky", "steady", "steady"]
        assert metric(running, "koda_scheduler_skipped_total", task="flaky", reason="paused") == 1
        # A person resumes it by deleting the key: the next hour fires again.
        await kv.delete("pause.flaky")
        await wait_for(lambda: "flaky" not in running.service.paused.ids, 10)
        await clock.advance(timedelta(hours=1))
        assert [r.task for r in await run_requests(bus)].count("flaky") == 2
    finally:
        await running.stop()


async def test_a_broken_tasks_json_keeps_the_last_good_schedule_and_says_where(
        settings: KodaSettings, bus: Bus) -> None:
    fast = settings.model_copy(update={"scheduler_reload_interval": 0.05})
    path = write_tasks(fast, [task("kept", "0 * * * *", overlap="allow")])
    clock = FakeClock(at("2026-06-01T08:59:30+00:00"))
    running = await start_scheduler(fast, clock)
    try:
        broken = json.dumps({"tasks": [task("kept", "0 * * * *"), task("new", "0 25 * * *")]}, indent=2)
        path.write_text(broken)
        await wait_for(lambda: metric(running, "koda_scheduler_reload_errors_total") == 1, 10)
        said = await events_when(bus, "config.invalid")
        assert len(said) == 1 and "keeping the last good schedule" in said[0].summary
        detail = said[0].data["details"][0]
        assert (detail["file"], detail["field"]) == (str(path), "tasks[1].cron")
        assert detail["line"] == broken.splitlines().index('      "cron": "0 25 * * *",') + 1
        assert "hour: 25 is outside 0-23" in said[0].data["problems"][0]
        await clock.advance(timedelta(seconds=30))
        assert [r.task for r in await run_requests(bus)] == ["kept"]  # the old schedule still runs
        # Fixed: the new task joins at its next fire; the kept one stays on its schedule.
        write_tasks(fast, [task("kept", "0 * * * *", overlap="allow"),
                           task("new", "30 9 * * *", overlap="allow")])
        await wait_for(lambda: "new" in running.service.heap.tasks, 10)
        await clock.advance(timedelta(hours=1))
        assert sorted((r.scheduled_for.strftime("%H:%M"), r.task) for r in await run_requests(bus)) == [
            ("09:00", "kept"), ("09:30", "new"), ("10:00", "kept")]
        # Removing a task stops it.
        write_tasks(fast, [task("new", "30 9 * * *", overlap="allow")])
        await wait_for(lambda: "kept" not in running.service.heap.tasks, 10)
        await clock.advance(timedelta(hours=1))
        assert len(await run_requests(bus)) == 3
    finally:
        await running.stop()
