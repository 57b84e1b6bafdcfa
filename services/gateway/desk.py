"""The gateway's approval desk: decisions from Discord and the console, expiry, and the metrics.

Every decision goes through `ApprovalStore.decide`, so it is taken once whoever clicks where;
the desk adds the allowlist check for Discord users and counts outcomes for Prometheus.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from koda.shared.approvals import ApprovalStore, Decision
from koda.shared.bus import Bus
from koda.shared.messages import ApprovalRecord

WAIT_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600)


class ApprovalDesk:
    """Decide, sweep, and export `koda_approvals_*` (docs/contracts.md)."""

    def __init__(self, bus: Bus, registry: CollectorRegistry) -> None:
        self.store = ApprovalStore(bus)
        self.pending_gauge = Gauge("koda_approvals_pending", "Approvals waiting for a person",
                                   registry=registry)
        self.oldest_gauge = Gauge("koda_approval_oldest_pending_seconds",
                                  "Age of the oldest pending approval", registry=registry)
        self.total = Counter("koda_approvals_total", "Approvals decided, by outcome",
                             ["outcome"], registry=registry)
        self.wait = Histogram("koda_approval_wait_seconds", "From proposal to decision",
                              buckets=WAIT_BUCKETS, registry=registry)

    async def decide(self, approval_id: str, approve: bool, who: str,
                     note: str | None = None, args: dict[str, Any] | None = None) -> Decision:
        decision = await self.store.decide(approval_id, approve, who, note=note, args=args)
        record = decision.record
        if record is not None and (decision.changed or decision.reason == "expired"):
            self._count(record)
        await self.refresh()
        return decision

    async def sweep(self) -> tuple[list[ApprovalRecord], list[ApprovalRecord]]:
        """Remind and expire (the store emits the events the bot turns into messages)."""
        reminded, expired = await self.store.sweep()
        for record in expired:
            self._count(record)
        await self.refresh()
        return reminded, expired

    def _count(self, record: ApprovalRecord) -> None:
        self.total.labels(record.status).inc()
        if record.decided_at is not None:
            self.wait.observe(max(0.0, (record.decided_at - record.created_at).total_seconds()))

    async def refresh(self) -> list[ApprovalRecord]:
        pending = await self.store.pending()
        self.pending_gauge.set(len(pending))
        now = datetime.now(UTC)
        oldest = min((r.created_at for r in pending), default=None)
        self.oldest_gauge.set((now - oldest).total_seconds() if oldest else 0)
        return pending
