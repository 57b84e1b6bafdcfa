"""Waiting for a positive signal: a test never sleeps to prove that nothing more happened."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from koda.shared.bus import Bus

__all__ = ["eventually", "queue_drained"]


async def eventually(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def queue_drained(bus: Bus, stream: str, timeout: float = 15.0) -> None:
    """Wait until a work queue holds nothing and its consumer has nothing delivered unanswered:
    from then on nothing queued so far can run again (the positive signal that proves a
    negative, instead of a sleep)."""

    async def drained() -> bool:
        info = await bus.js.stream_info(stream)
        if info.state.messages:
            return False
        consumers = await bus.js.consumers_info(stream)
        return all(c.num_pending == 0 and c.num_ack_pending == 0 for c in consumers)

    await eventually(drained, timeout)
