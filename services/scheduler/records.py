"""`fire.<task>` records, written behind the fires instead of in their way.

Publishing a fire and recording it are both JetStream writes; doing both per fire doubles the
writes on the path every other fire of the same second waits on. The writer keeps only the
newest record per task and flushes in the background (and once more on stop). A record that
is a moment stale after a crash is harmless: the catch-up it causes republishes fires with the
same message ids, and JetStream drops those as duplicates.
"""

from __future__ import annotations

import asyncio
import logging

from nats.js.kv import KeyValue

from koda.shared.messages import SchedulerFire

log = logging.getLogger(__name__)
_CHUNK = 500  # writes in flight at once during a flush


class FireRecords:
    """Coalescing writer of the last decided fire per task."""

    def __init__(self, kv: KeyValue, interval: float = 0.2) -> None:
        self.kv = kv
        self.interval = interval
        self._pending: dict[str, SchedulerFire] = {}
        self._dirty = asyncio.Event()

    def note(self, record: SchedulerFire) -> None:
        current = self._pending.get(record.task)
        if current is None or record.last_fire >= current.last_fire:
            self._pending[record.task] = record
        self._dirty.set()

    async def run(self) -> None:
        """Flush whenever something is pending, at most every `interval` seconds."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.interval)  # let the rest of this second's fires go first
            await self.flush()

    async def flush(self) -> None:
        self._dirty.clear()
        batch, self._pending = list(self._pending.values()), {}
        for start in range(0, len(batch), _CHUNK):
            chunk = batch[start:start + _CHUNK]
            results = await asyncio.gather(
                *(self.kv.put(f"fire.{r.task}", r.to_bytes()) for r in chunk), return_exceptions=True)
            for record, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("could not record fire; retrying", extra={"task": record.task,
                                                                         "error": str(result)})
                    self.note(record)
