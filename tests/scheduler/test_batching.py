"""Fires due together are stored as one atomic batch, and a refused batch loses nothing."""

from __future__ import annotations

import asyncio

from koda.services.scheduler.batching import BatchPublisher
from koda.shared.bus import Bus


async def test_fires_due_together_are_one_batch_and_repeats_stay_single(bus: Bus) -> None:
    publisher = BatchPublisher(bus.nc, bus.js)
    first = await asyncio.gather(*(publisher.publish(f"koda.runs.t{i}", b"{}", f"t{i}:1000")
                                   for i in range(200)))
    assert not any(first) and publisher.batches == 1
    # A restarted scheduler republishes some of the same fires with new ones: the batch is
    # refused as a whole, then each request is answered by JetStream's de-duplication.
    again = await asyncio.gather(*(publisher.publish(f"koda.runs.t{i}", b"{}", f"t{i}:1000")
                                   for i in range(190, 210)))
    assert again == [True] * 10 + [False] * 10
    assert publisher.batches == 1
    assert (await bus.js.stream_info("RUNS")).state.messages == 210


async def test_a_lone_fire_is_a_plain_publish(bus: Bus) -> None:
    publisher = BatchPublisher(bus.nc, bus.js)
    assert await publisher.publish("koda.runs.solo", b"{}", "solo:1") is False
    assert await publisher.publish("koda.runs.solo", b"{}", "solo:1") is True
    assert publisher.batches == 0
