"""A live in-memory view of KV keys that stays live across NATS restarts.

nats-py's KV watch is an ordered consumer: after a NATS restart it notices that its consumer is
gone only when two idle heartbeats (5 s each) have been missed, so a view fed by it froze for
10-13 s after every restart (the watchdog's heartbeats, the scheduler's pauses and active runs).
`KeyWatch` starts a fresh watch as soon as the connection is back: its first values are the
current state, and keys that vanished meanwhile (expired heartbeats, deleted pauses) are
dropped from the view. While JetStream is still recovering, it tries again after a short backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from nats.js.kv import KV_DEL, KV_PURGE

from .supervised import Backoff

if TYPE_CHECKING:
    from .bus import Bus

log = logging.getLogger(__name__)
#: How long a stop of a dead watch may take (its consumer may be gone with the old server).
STOP_TIMEOUT_S = 1.0


class KeyWatch:
    """Follow keys of `bucket` matching `pattern`: `apply(key, value or None)` on each change."""

    def __init__(self, bus: Bus, bucket: str, pattern: str,
                 apply: Callable[[str, bytes | None], None]) -> None:
        self.bus = bus
        self.bucket = bucket
        self.pattern = pattern
        self.apply = apply
        self.ready = asyncio.Event()  # the current values are loaded (set once)
        self.restarts = 0  # fresh watches started after a reconnect
        self._known: set[str] = set()
        self._restart = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start following and return once the current values are loaded."""
        self._unlisten = self.bus.on_reconnect(self._restart.set)
        self._task = asyncio.create_task(self._run(), name=f"watch {self.bucket} {self.pattern}")
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        backoff = Backoff(first=0.1, cap=2.0, quiet=10.0)
        while True:
            backoff.started()
            self._restart.clear()
            try:
                await self._follow()
                self.restarts += 1
                backoff.reset()
                continue  # the connection came back: a fresh watch at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # JetStream not answering yet after a restart
                log.info("watch of %s %s failed (%r); starting it again", self.bucket,
                         self.pattern, exc)
            try:
                await asyncio.wait_for(self._restart.wait(), backoff.delay())
            except TimeoutError:
                pass

    async def _follow(self) -> None:
        """One watch, until the connection comes back after a drop (returns) or it fails."""
        watcher = await self.bus.kv[self.bucket].watch(self.pattern)
        initial: set[str] | None = set()  # keys in the current values, until they are all in

        async def consume() -> None:
            nonlocal initial
            async for entry in watcher:
                if entry is None:  # the end of the current values
                    if initial is not None:
                        for gone in self._known - initial:  # vanished while we were away
                            self._known.discard(gone)
                            self.apply(gone, None)
                        initial = None
                    self.ready.set()
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE) or not entry.value
                if initial is not None and not deleted:
                    initial.add(entry.key)
                if deleted:
                    self._known.discard(entry.key)
                else:
                    self._known.add(entry.key)
                self.apply(entry.key, None if deleted else entry.value)

        consumer = asyncio.create_task(consume())
        restart = asyncio.create_task(self._restart.wait())
        try:
            await asyncio.wait({consumer, restart}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            consumer.cancel()
            restart.cancel()
            try:
                await asyncio.wait_for(watcher.stop(), STOP_TIMEOUT_S)  # type: ignore[no-untyped-call]
            except (TimeoutError, Exception):
                pass  # a consumer the old server took with it
        if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
            raise consumer.exception()  # type: ignore[misc]
