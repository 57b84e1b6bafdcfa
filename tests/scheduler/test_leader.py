"""Two schedulers, and a restart of each: every fire lands in RUNS exactly once, in real time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings

from .helpers import run_requests, start_scheduler, stream_messages, task, wait_for, write_tasks


async def test_two_schedulers_and_restarts_fire_each_second_exactly_once(
        settings: KodaSettings, bus: Bus) -> None:
    fast = settings.model_copy(update={"scheduler_leader_ttl": 0.9})
    write_tasks(fast, [task("tick", "* * * * * *", overlap="allow", catch_up={"policy": "all"})])
    a = await start_scheduler(fast, instance="a")
    b = await start_scheduler(fast, instance="b", own_ports=True)
    assert a.service.lock.held and not b.service.lock.held
    await asyncio.sleep(2.2)
    await a.stop()  # a leaves; b takes over and catches up whatever fell in between
    await wait_for(lambda: b.service.lock.held, 5)
    await asyncio.sleep(1.5)
    a = await start_scheduler(fast, instance="a")  # a comes back as the standby
    assert not a.service.lock.held
    await asyncio.sleep(1.5)
    await b.stop()
    await wait_for(lambda: a.service.lock.held, 5)
    await asyncio.sleep(1.5)
    await a.stop()

    requests = await run_requests(bus, "tick")
    seconds = sorted(r.scheduled_for for r in requests)
    assert len(seconds) >= 6
    assert len(set(seconds)) == len(seconds), "a fire landed twice"
    gaps = {later - earlier for earlier, later in itertools.pairwise(seconds)}
    assert gaps == {timedelta(seconds=1)}, f"a fire is missing: {seconds}"
    ids = [h["Nats-Msg-Id"] for _, _, h in await stream_messages(bus, "RUNS")]
    assert len(ids) == len(set(ids))
    assert {r.trigger for r in requests} <= {"cron", "catch_up"}


async def test_a_crashed_leader_is_replaced_once_its_lock_lapses(settings: KodaSettings, bus: Bus) -> None:
    fast = settings.model_copy(update={"scheduler_leader_ttl": 0.9})
    write_tasks(fast, [task("tick", "* * * * * *", overlap="allow", catch_up={"policy": "all"})])
    a = await start_scheduler(fast, instance="a")
    b = await start_scheduler(fast, instance="b", own_ports=True)
    await asyncio.sleep(1.5)
    # A dies without a word: its connection drops, so it cannot release the lock.
    await a.service.bus.nc.close()
    a.serving.cancel()
    await asyncio.gather(a.serving, return_exceptions=True)
    await wait_for(lambda: b.service.lock.held, 5)
    await asyncio.sleep(1.5)
    await b.stop()
    seconds = sorted(r.scheduled_for for r in await run_requests(bus, "tick"))
    assert len(set(seconds)) == len(seconds) >= 3
    assert {y - x for x, y in itertools.pairwise(seconds)} == {timedelta(seconds=1)}, seconds
