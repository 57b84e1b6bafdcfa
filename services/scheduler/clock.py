"""Time for the scheduler, injectable so DST and downtime tests run in milliseconds.

`SystemClock` is real time. `FakeClock` only moves when a test calls `advance`/`set`, and
`advance` returns once the scheduler loop has gone back to sleep, so a test steps through
hours of schedule deterministically.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the scheduler needs from time."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        """Return at `when` (never, if None) or as soon as `wake` is set, whichever is first."""
        ...


class SystemClock:
    """Wall-clock time, waking within a fraction of a millisecond of the instant asked for.

    The event loop's timer rounds an epoll wait up to the next millisecond and is often later
    still, so it wakes `SPIN` early and yields to the loop until the instant: at most a couple
    of milliseconds of CPU per wake.
    """

    SPIN = timedelta(milliseconds=2)

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime | None, wake: asyncio.Event) -> None:
        timeout = None if when is None else (when - self.SPIN - self.now()).total_seconds()
        if timeout is None or timeout > 0:
            try:
                await asyncio.wait_for(wake.wait(), timeout)
                return
            except TimeoutError:
                pass
        while when is not None and self.now() < when and not wake.is_set():
            await asyncio.sleep(0)


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
