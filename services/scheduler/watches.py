"""In-memory views of KV state the scheduler consults at every fire, kept fresh by KV watchers.

Reading the KV at fire time would put a round trip per task on the path to the publish; a
watcher delivers changes within milliseconds instead, so a fire only looks at a dict.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from koda.shared.messages import RUN_TERMINAL, RunLedgerEntry

log = logging.getLogger(__name__)


class KeyWatch:
    """Follow keys matching a pattern; `apply(key, value or None)` on each change."""

    def __init__(self, kv: KeyValue, pattern: str, apply: Callable[[str, bytes | None], None]) -> None:
        self.kv = kv
        self.pattern = pattern
        self.apply = apply
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start following and return once the current values are loaded."""
        self._task = asyncio.create_task(self._follow(), name=f"watch {self.pattern}")
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def _follow(self) -> None:
        watcher = await self.kv.watch(self.pattern)
        try:
            async for entry in watcher:
                if entry is None:  # the end of the initial values
                    self.ready.set()
                    continue
                deleted = entry.operation in (KV_DEL, KV_PURGE)
                self.apply(entry.key, None if deleted else entry.value)
        finally:
            await watcher.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass


class PausedTasks:
    """Task ids with a `pause.<task>` record in the `scheduler` KV."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def apply(self, key: str, value: bytes | None) -> None:
        task = key.removeprefix("pause.")
        if value is None:
            self.ids.discard(task)
        else:
            self.ids.add(task)


class ActiveRuns:
    """Run ids per task whose ledger entry in the `runs` KV is not terminal yet."""

    def __init__(self) -> None:
        self.by_task: dict[str, set[str]] = {}

    def apply(self, key: str, value: bytes | None) -> None:
        task = key.split(".", 1)[0]
        active = self.by_task.setdefault(task, set())
        status = None
        if value is not None:
            try:
                status = RunLedgerEntry.from_bytes(value).status
            except ValueError:
                log.warning("unreadable run ledger entry", extra={"key": key})
        if status is None or status in RUN_TERMINAL:
            active.discard(key)
        else:
            active.add(key)
        if not active:
            del self.by_task[task]

    def running(self, task: str) -> int:
        return len(self.by_task.get(task, ()))
