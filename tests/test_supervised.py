"""A helper loop that fails is restarted, its backoff grows to a cap and resets after quiet time."""

from __future__ import annotations

import asyncio
import time

from koda.shared.supervised import Backoff, keep_running


def test_backoff_grows_to_its_cap_and_resets_after_a_quiet_period() -> None:
    backoff = Backoff(first=1.0, cap=8.0, quiet=0.05)
    delays = [backoff.delay() for _ in range(6)]
    for delay, expected in zip(delays[:3], (1, 2, 4), strict=True):
        assert 0.8 * expected <= delay <= 1.2 * expected
    assert all(0.8 * 8 <= d <= 1.2 * 8 for d in delays[3:])  # capped, with jitter
    backoff.started()
    time.sleep(0.06)  # the work ran quietly past `quiet` before failing again
    assert 0.8 <= backoff.delay() <= 1.2


async def test_a_failing_loop_is_restarted_until_it_returns() -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("NATS away")

    stop = asyncio.Event()
    await asyncio.wait_for(keep_running("flaky", flaky, stop, Backoff(first=0.01, cap=0.02)), 5)
    assert len(runs) == 3


async def test_stop_ends_the_wait_between_restarts() -> None:
    stop = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("always")

    task = asyncio.create_task(keep_running("broken", broken, stop, Backoff(first=30, cap=60)))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0
