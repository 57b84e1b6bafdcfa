"""`fire.<task>` records, written behind the fires instead of in their way.

Publishing a fire and recording it are both JetStream writes; doing both for every fire of a
busy second doubles the writes every other fire waits on. So the writer keeps the newest record
per task, writes in the background, and lets a record lag by up to `max_lag` for a task that
fires that often (every record is written exactly on a clean stop). A lagging record after a
crash is harmless: the catch-up it causes republishes fires whose message ids JetStream still
holds (duplicate window: an hour), so they are dropped and recorded as duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from nats.js.kv import KeyValue

from koda.shared.messages import SchedulerFire

log = logging.getLogger(__name__)
_CHUNK = 500  # writes in flight at once during a flush
_REFRESH_PER_FLUSH = 20  # lagging records rewritten per flush: at most 100 a second


class FireRecords:
    """Coalescing writer of the last decided fire per task."""

    def __init__(self, kv: KeyValue, interval: float = 0.2, max_lag: float = 30.0) -> None:
        self.kv = kv
        self.interval = interval
        self.max_lag = timedelta(seconds=max_lag)
        self._latest: dict[str, SchedulerFire] = {}
        self._written: dict[str, datetime] = {}
        self._due: set[str] = set()
        self._refresh: set[str] = set()
        self._dirty = asyncio.Event()
        self._writing = 0

    @property
    def pending(self) -> int:
        """Records waiting to be written or being written (not counting those allowed to lag)."""
        return len(self._due) + self._writing

    def note(self, record: SchedulerFire) -> None:
        current = self._latest.get(record.task)
        if current is not None and record.last_fire < current.last_fire:
            return
        self._latest[record.task] = record
        written = self._written.get(record.task)
        if record.decision != "fired" or written is None:
            self._due.add(record.task)
        elif record.last_fire - written >= self.max_lag:
            # A frequent task's refresh: trickled out, so tasks that fire together (a thousand
            # every second) do not all rewrite their records in the same second.
            self._refresh.add(record.task)
        else:
            return
        self._dirty.set()

    async def run(self) -> None:
        """Flush whenever something is due, at most every `interval` seconds."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.interval)  # let the rest of this second's fires go first
            await self.flush(everything=False)

    async def flush(self, everything: bool = True) -> None:
        """Write what is due (with `everything`, also the records allowed to lag)."""
        self._dirty.clear()
        tasks: list[str]
        if everything:
            tasks = [t for t, r in self._latest.items() if self._written.get(t) != r.last_fire]
            self._refresh.clear()
        else:
            refresh = [self._refresh.pop() for _ in range(min(_REFRESH_PER_FLUSH, len(self._refresh)))]
            tasks = [*self._due, *refresh]
            if self._refresh:
                self._dirty.set()
        self._due.clear()
        batch = [self._latest[t] for t in tasks]
        self._writing += len(batch)
        for start in range(0, len(batch), _CHUNK):
            chunk = batch[start:start + _CHUNK]
            try:
                results = await asyncio.gather(
                    *(self.kv.put(f"fire.{r.task}", r.to_bytes()) for r in chunk),
                    return_exceptions=True)
            finally:
                self._writing -= len(chunk)
            for record, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("could not record fire; retrying", extra={"task": record.task,
                                                                         "error": str(result)})
                    self._due.add(record.task)
                    self._dirty.set()
                else:
                    self._written[record.task] = record.last_fire
