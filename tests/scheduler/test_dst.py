"""DST in a named zone: spring-forward and fall-back fire the right instants, once each."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from koda.shared import cron
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.scheduler.fake_clock import FakeClock

from .helpers import at, run_requests, start_scheduler, stream_messages, task, write_tasks

NY = ZoneInfo("America/New_York")  # 2026: clocks spring forward 8 March, fall back 1 November


def utc_times(requests: list, task_id: str) -> list[str]:
    return [r.scheduled_for.strftime("%H:%M") for r in requests if r.task == task_id]


async def step_through(clock: FakeClock, until: datetime) -> None:
    while clock.now() < until:  # half-minute steps: every fire is on time, none caught up
        await clock.advance(timedelta(seconds=30))


async def test_spring_forward_fires_the_skipped_time_once_at_the_jump(
        settings: KodaSettings, bus: Bus) -> None:
    clock = FakeClock(at("2026-03-08T04:59:00+00:00"))  # 23:59 EST on 7 March
    # No worker runs here, so overlap "allow": every fire must reach RUNS.
    write_tasks(settings, [task("daily-0230", "30 2 * * *", overlap="allow"),
                           task("hourly", "30 * * * *", overlap="allow"),
                           task("daily-0300", "0 3 * * *", overlap="allow")],
                timezone="America/New_York")
    running = await start_scheduler(settings, clock)
    try:
        await step_through(clock, at("2026-03-08T09:00:00+00:00"))
    finally:
        await running.stop()
    requests = await run_requests(bus)
    # 02:30 does not exist that night: the daily task fires once, when 02:00 EST becomes 03:00 EDT.
    assert utc_times(requests, "daily-0230") == ["07:00"]
    # An hourly task follows real hours: 00:30 and 01:30 EST, then 03:30 and 04:30 EDT.
    assert utc_times(requests, "hourly") == ["05:30", "06:30", "07:30", "08:30"]
    # 03:00 EDT exists and is the same instant as the jump: one fire, not two.
    assert utc_times(requests, "daily-0300") == ["07:00"]
    ids = [h["Nats-Msg-Id"] for _, _, h in await stream_messages(bus, "RUNS")]
    assert len(ids) == len(set(ids)) == 6


async def test_fall_back_fires_a_repeated_time_once_and_hourly_in_both_hours(
        settings: KodaSettings, bus: Bus) -> None:
    clock = FakeClock(at("2026-11-01T03:59:00+00:00"))  # 23:59 EDT on 31 October
    write_tasks(settings, [task("daily-0130", "30 1 * * *", overlap="allow"),
                           task("hourly", "30 * * * *", overlap="allow"),
                           task("daily-0230", "30 2 * * *", overlap="allow")],
                timezone="America/New_York")
    running = await start_scheduler(settings, clock)
    try:
        await step_through(clock, at("2026-11-01T08:00:00+00:00"))
    finally:
        await running.stop()
    requests = await run_requests(bus)
    assert utc_times(requests, "daily-0130") == ["05:30"]  # the first 01:30 (EDT) only
    assert utc_times(requests, "hourly") == ["04:30", "05:30", "06:30", "07:30"]  # 01:30 twice
    assert utc_times(requests, "daily-0230") == ["07:30"]
    assert len({r.run_id for r in requests}) == len(requests) == 6


def test_a_year_of_a_daily_time_in_a_dst_zone_is_one_fire_per_day() -> None:
    for expression in ("30 2 * * *", "30 1 * * *", "0 0 * * *"):
        spec = cron.parse(expression)
        fires = cron.fires_between(spec, at("2026-01-01T05:00:00+00:00"),
                                   at("2027-01-01T05:00:00+00:00"), NY)
        days = Counter(f.astimezone(NY).date() for f in fires)
        assert len(fires) == 365 and set(days.values()) == {1}, expression
