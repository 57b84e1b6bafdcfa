"""The leader lock: `leader` in the `scheduler` KV, so two schedulers fire each cron once.

The record names the holder and when its claim lapses. Every write is compare-and-set on the
key's revision, so two candidates can never both win a round; a holder that stops renewing
(crashed, partitioned) is replaced once its claim has lapsed. Should two ever overlap anyway,
JetStream drops the second publish of a fire by its message id.
"""

from __future__ import annotations

import json
import logging
import time

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)
KEY = "leader"


class LeaderLock:
    """Acquire, renew and release the scheduler's leader lock for one instance."""

    def __init__(self, kv: KeyValue, instance: str, ttl: float) -> None:
        self.kv = kv
        self.instance = instance
        self.ttl = ttl
        self.held = False
        self._revision: int | None = None
        #: When we took over from a holder whose claim lapsed: the time of its last renewal.
        #: It led, and so fired, until then; fire records may lag behind that (records.py).
        self.predecessor_alive_until: float | None = None

    def _record(self) -> bytes:
        return json.dumps({"instance": self.instance, "expires_at": time.time() + self.ttl}).encode()

    async def try_acquire(self) -> bool:
        """Take or renew the lock if it is free, ours, or lapsed; returns whether we hold it."""
        try:
            try:
                entry = await self.kv.get(KEY)
            except KeyNotFoundError:
                self._revision = await self.kv.create(KEY, self._record())
                return self._set(True)
            if entry.value is None:  # deleted: the last holder let go
                self._revision = await self.kv.update(KEY, self._record(), last=entry.revision)
                return self._set(True)
            holder = json.loads(entry.value)
            if holder.get("instance") == self.instance or holder.get("expires_at", 0) < time.time():
                self._revision = await self.kv.update(KEY, self._record(), last=entry.revision)
                if holder.get("instance") != self.instance and not self.held:
                    self.predecessor_alive_until = float(holder.get("expires_at", 0)) - self.ttl
                return self._set(True)
            return self._set(False)
        except (KeyWrongLastSequenceError, ValueError):
            return self._set(False)  # someone else moved first
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
