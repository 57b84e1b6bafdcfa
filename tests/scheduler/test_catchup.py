"""Down across three due fires: `latest` runs one, `all` three, `none` zero, each said in an event."""

from __future__ import annotations

from datetime import timedelta

from koda.shared.bus import Bus
from koda.shared.messages import SchedulerFire
from koda.shared.settings import KodaSettings
from tests.scheduler.fake_clock import FakeClock

from .helpers import at, events, metric, run_requests, start_scheduler, task, write_tasks

POLICIES = ("latest", "all", "none", "window")
WINDOW = {"window_minutes": 90}  # at 12:30 that keeps 11:00 and 12:00


async def test_downtime_catch_up_follows_each_policy(settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task(f"job-{p}", "0 * * * *", overlap="allow",
                                catch_up={"policy": p, **(WINDOW if p == "window" else {})})
                           for p in POLICIES])
    clock = FakeClock(at("2026-05-04T08:59:30+00:00"))
    first = await start_scheduler(settings, clock)
    await clock.advance(timedelta(seconds=30))  # 09:00: every task fires on time
    await first.stop()
    assert sorted(r.task for r in await run_requests(bus)) == [f"job-{p}" for p in sorted(POLICIES)]

    # Down from 09:00:30 to 12:30: 10:00, 11:00 and 12:00 fall while nothing runs.
    later = FakeClock(at("2026-05-04T12:30:00+00:00"))
    second = await start_scheduler(settings, later)
    try:
        caught = [r for r in await run_requests(bus) if r.trigger == "catch_up"]
        by_task = {p: sorted(r.scheduled_for.strftime("%H:%M") for r in caught if r.task == f"job-{p}")
                   for p in POLICIES}
        assert by_task == {"latest": ["12:00"], "all": ["10:00", "11:00", "12:00"], "none": [],
                           "window": ["11:00", "12:00"]}
        assert all(r.run_id == f"{r.task}.{round(r.scheduled_for.timestamp() * 1000)}" for r in caught)
        said = {e.task: e for e in await events(bus, "scheduler.catch_up")}
        assert set(said) == {f"job-{p}" for p in POLICIES}
        for p in POLICIES:
            event = said[f"job-{p}"]
            assert event.data["policy"] == p and event.data["missed"] == 3
            assert event.data["dropped"] == {"latest": 2, "all": 0, "none": 3, "window": 1}[p]
            assert f"policy {p}" in event.summary
            assert metric(second, "koda_scheduler_missed_fires_total", task=f"job-{p}", policy=p) == 3
        await second.service.records.flush()
        none_record = SchedulerFire.from_bytes((await bus.kv["scheduler"].get("fire.job-none")).value)
        assert none_record.decision == "dropped" and none_record.last_fire == at("2026-05-04T12:00:00+00:00")
        # Back on schedule: 13:00 fires once for each task, as cron.
        await later.advance(timedelta(minutes=30))
        on_time = [r.task for r in await run_requests(bus)
                   if r.scheduled_for == at("2026-05-04T13:00:00+00:00")]
        assert sorted(on_time) == [f"job-{p}" for p in sorted(POLICIES)]
    finally:
        await second.stop()
    # A restart right away misses nothing more, so it says nothing more.
    third = await start_scheduler(settings, FakeClock(at("2026-05-04T13:00:10+00:00")))
    await third.stop()
    assert len(await events(bus, "scheduler.catch_up")) == len(POLICIES)


async def test_a_stalled_loop_applies_the_catch_up_policy_not_a_backlog(
        settings: KodaSettings, bus: Bus) -> None:
    """A laptop asleep for hours: the missed minutes follow the policy, they do not all fire."""
    write_tasks(settings, [task("minutely", "* * * * *", overlap="allow",
                                catch_up={"policy": "latest"})])
    clock = FakeClock(at("2026-05-04T08:59:30+00:00"))
    running = await start_scheduler(settings, clock)
    try:
        await clock.advance(timedelta(hours=3))
        requests = await run_requests(bus, "minutely")
        assert [r.trigger for r in requests].count("catch_up") == 1
        assert len(requests) <= 3  # the catch-up plus the last minute on time, not 180 fires
        said = await events(bus, "scheduler.catch_up")
        assert len(said) == 1 and said[0].data["missed"] >= 170
    finally:
        await running.stop()
