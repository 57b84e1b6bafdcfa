"""A clock for the scheduler that only moves when a test calls `advance`/`set`.

`advance` returns once the scheduler loop has gone back to sleep, so a test steps through hours
of schedule deterministically.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A clock that stands still until told to move; for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Event()
        self._asleep = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        while (when is None or self._now < when) and not wake.is_set():
            self._moved.clear()
            self._asleep.set()
            waiter = asyncio.ensure_future(wake.wait())
            mover = asyncio.ensure_future(self._moved.wait())
            try:
                await asyncio.wait({waiter, mover}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                mover.cancel()
                self._asleep.clear()

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until the scheduler loop is asleep again (everything due has been handled)."""
        await asyncio.sleep(0)
        await asyncio.wait_for(self._asleep.wait(), timeout)

    async def set(self, when: datetime) -> None:
        """Jump to `when` and wait for the scheduler to handle whatever fell due."""
        self._now = when.astimezone(UTC)
        self._asleep.clear()
        self._moved.set()
        await self.settled()

    async def advance(self, delta: timedelta | float) -> None:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        await self.set(self._now + step)
