"""Time for the scheduler, injectable so DST and downtime tests run in milliseconds.

`SystemClock` is real time; the tests' `FakeClock` (tests/scheduler/fake_clock.py) steps through
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
