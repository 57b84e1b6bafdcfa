"""The run ledger: one `RunLedgerEntry` per run id in the `runs` KV.

It is what makes a run resumable and done once: a worker claims a run before it starts (a
terminal entry means "already done, acknowledge and move on"), records every finished step, and
writes the terminal status only after the run record is on disk. Every write is a
compare-and-set on the entry's revision, so two workers never both believe they own a run.

Every claim also bumps the entry's fencing token (`fence`). An attempt checks that the ledger
still holds its token before each side effect (a tool call, an action request, the record), so
an older attempt that is somehow still alive (a stalled worker whose delivery was handed to
another) acts no more once a newer one has claimed the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.js.kv import KeyValue

from koda.shared.errors import Superseded
from koda.shared.kv_record import KVRecords
from koda.shared.messages import RUN_TERMINAL, RunLedgerEntry, utcnow


class LedgerConflict(Superseded):
    """Someone else changed the entry between our read and our write."""


@dataclass
class Claim:
    """A run this worker now holds: the entry and the revision to update it from."""

    entry: RunLedgerEntry
    revision: int
    resumed: bool  # the run had been started before (a crash, a pause, a retry)


class Ledger:
    """Reads and writes the `runs` KV for one worker instance."""

    def __init__(self, kv: KeyValue, worker: str) -> None:
        self.kv = kv
        self.records = KVRecords(kv, RunLedgerEntry)
        self.worker = worker

    async def get(self, run_id: str) -> tuple[RunLedgerEntry, int] | None:
        found = await self.records.get(run_id)
        return (found.value, found.revision) if found else None

    async def claim(self, run_id: str, task: str) -> Claim | None:
        """Take the run; None if it already reached a terminal status (a duplicate delivery)."""
        for _ in range(5):
            found = await self.get(run_id)
            if found is None:
                entry = RunLedgerEntry(run_id=run_id, task=task, status="running", worker=self.worker,
                                       fence=1)
                created = await self.records.write(run_id, entry, 0)
                if created is None:
                    continue
                return Claim(entry, created, resumed=False)
            current, revision = found
            if current.status in RUN_TERMINAL:
                return None
            # Found "running": its worker stopped mid-run (a crash or a missed ack deadline).
            crashes = current.claims + (1 if current.status == "running" else 0)
            entry = current.model_copy(update={"status": "running", "worker": self.worker,
                                               "claims": crashes, "fence": current.fence + 1,
                                               "updated_at": utcnow()})
            new_revision = await self.records.write(run_id, entry, revision)
            if new_revision is None:
                continue
            return Claim(entry, new_revision, resumed=True)
        raise LedgerConflict(run_id)

    async def update(self, claim: Claim, **changes: Any) -> RunLedgerEntry:
        """Change our entry; raises LedgerConflict if another worker took the run meanwhile."""
        entry = claim.entry.model_copy(update={**changes, "updated_at": utcnow()})
        revision = await self.records.write(entry.run_id, entry, claim.revision)
        if revision is None:
            raise LedgerConflict(entry.run_id)
        claim.revision = revision
        claim.entry = entry
        return entry

    async def superseded(self, claim: Claim) -> str | None:
        """Why this attempt may no longer act on its run (None: it still owns it)."""
        found = await self.get(claim.entry.run_id)
        if found is None:
            return "the run's ledger entry is gone"
        current, _ = found
        if current.fence != claim.entry.fence:
            return (f"superseded: attempt {claim.entry.fence} of {claim.entry.run_id} was taken "
                    f"over by attempt {current.fence} ({current.worker})")
        return None

    async def check(self, claim: Claim) -> None:
        """Raise Superseded unless this attempt still owns the run."""
        reason = await self.superseded(claim)
        if reason:
            raise Superseded(reason)
