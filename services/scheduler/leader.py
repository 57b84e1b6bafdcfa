"""The leader lock: `leader` in the `scheduler` KV, so two schedulers fire each cron once.

The record names the holder and when its claim lapses. Every write is compare-and-set on the
key's revision, so two candidates can never both win a round; a holder that stops renewing
(crashed, partitioned) is replaced once its claim has lapsed. Should two ever overlap anyway,
JetStream drops the second publish of a fire by its message id.
"""

from __future__ import annotations

import logging
import time

from nats.js.kv import KeyValue

from koda.shared.kv_record import KVRecords
from koda.shared.messages import LeaderRecord

log = logging.getLogger(__name__)
KEY = "leader"


class LeaderLock:
    """Acquire, renew and release the scheduler's leader lock for one instance."""

    def __init__(self, kv: KeyValue, instance: str, ttl: float) -> None:
        self.kv = kv
        self.records = KVRecords(kv, LeaderRecord)
        self.instance = instance
        self.ttl = ttl
        self.held = False
        self._revision: int | None = None
        #: When we took over from a holder whose claim lapsed: the time of its last renewal.
        #: It led, and so fired, until then; fire records may lag behind that (records.py).
        self.predecessor_alive_until: float | None = None

    async def try_acquire(self) -> bool:
        """Take or renew the lock if it is free, ours, or lapsed; returns whether we hold it."""
        try:
            found = await self.records.get(KEY)  # None: never taken, or the last holder let go
            holder = found.value if found else None
            if holder and holder.instance != self.instance and holder.expires_at >= time.time():
                return self._set(False)
            mine = LeaderRecord(instance=self.instance, expires_at=time.time() + self.ttl)
            revision = await self.records.write(KEY, mine, found.revision if found else 0)
            if revision is None:
                return self._set(False)  # someone else moved first
            if holder and holder.instance != self.instance and not self.held:
                self.predecessor_alive_until = holder.expires_at - self.ttl
            self._revision = revision
            return self._set(True)
        except Exception as exc:  # NATS away: we cannot prove we still lead, so we do not
            log.warning("leader lock unavailable: %s", exc)
            return self._set(False)

    def _set(self, held: bool) -> bool:
        if held != self.held:
            log.info("leadership %s", "acquired" if held else "lost", extra={"instance": self.instance})
        self.held = held
        return held

    async def release(self) -> None:
        """Let go at once so a standby takes over without waiting for the claim to lapse."""
        if self.held and self._revision is not None:
            try:
                await self.kv.delete(KEY, last=self._revision)
            except Exception as exc:
                log.info("leader lock not released (%s); it lapses in %.0fs", exc, self.ttl)
        self.held = False
