"""A loop that must keep running: restarted after a failure, with a backoff that resets.

One mechanism for every helper loop of every service (event readers, sweeps, digests, the
scheduler's watches): a failure is logged with the loop's name and the loop starts again after
a jittered exponential delay; a loop that ran quietly for `quiet` seconds before failing starts
again from the smallest delay, so one bad minute a week never leaves a loop waiting a minute.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import nats.errors

log = logging.getLogger(__name__)


class Backoff:
    """Jittered exponential delays between `first` and `cap` seconds, reset after `quiet` s."""

    def __init__(self, first: float = 1.0, cap: float = 60.0, quiet: float = 120.0) -> None:
        self.first, self.cap, self.quiet = first, cap, quiet
        self._next = first
        self._since = time.monotonic()

    def started(self) -> None:
        """The guarded work (re)started now."""
        self._since = time.monotonic()

    def delay(self) -> float:
        """The wait before the next attempt, after a failure."""
        if time.monotonic() - self._since >= self.quiet:
            self._next = self.first
        wait = self._next
        self._next = min(self._next * 2, self.cap)
        return wait * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first


async def keep_running(name: str, loop: Callable[[], Awaitable[None]], stopping: asyncio.Event,
                       backoff: Backoff | None = None) -> None:
    """Run `loop` until it returns or `stopping` is set, restarting it after each failure."""
    backoff = backoff or Backoff()
    while not stopping.is_set():
        backoff.started()
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except nats.errors.ConnectionClosedError:
            if stopping.is_set():
                return  # closed for good because the service stops; reconnects raise other errors
            log.warning("%s loop: NATS connection closed; restarting", name)
        except Exception:
            log.exception("%s loop failed; restarting", name, extra={"loop": name})
        try:
            await asyncio.wait_for(stopping.wait(), backoff.delay())
        except TimeoutError:
            pass
