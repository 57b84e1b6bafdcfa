"""Cancelling a run: a `run.cancel_requested` event on the bus, honoured by the worker.

Anyone who may emit events may ask (the console, `koda cancel`, Discord); the request is itself
an event, so the audit log says who asked. A worker that holds the run stops its session at
once and finishes it as `cancelled`. A run nobody holds (waiting out a retry or a rate-limit
pause, or still queued) is marked `cancelled` in the ledger with a compare-and-set, so exactly
one worker records it and a later delivery finds it finished and drops it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from koda.shared.bus import Bus
from koda.shared.events import RunEnded
from koda.shared.home import HomeLayout
from koda.shared.messages import RunLedgerEntry
from koda.shared.run_record import RunRecord
from koda.shared.secrets import Redactor

from .ledger import Claim, Ledger
from .records import write_record
from .timeline import Timeline

log = logging.getLogger(__name__)
SUBJECT = "koda.events.run.cancel_requested"


@dataclass
class RunsInHand:
    """The runs this worker is executing now, by run id, so a cancel request can reach them."""

    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    cancelled_by: dict[str, str] = field(default_factory=dict)

    def cancel(self, run_id: str, by: str) -> bool:
        task = self.tasks.get(run_id)
        if task is None or task.done():
            return False
        self.cancelled_by[run_id] = by
        task.cancel()
        return True

    def was_cancelled(self, run_id: str) -> str | None:
        return self.cancelled_by.pop(run_id, None)


async def cancel_idle(bus: Bus, ledger: Ledger, layout: HomeLayout, state: Path, redact: Redactor,
                      run_id: str, task: str | None, by: str) -> None:
    """Cancel a run no worker holds: queued (a terminal ledger entry makes its delivery a
    no-op) or paused between attempts. A run running elsewhere is left to its worker."""
    found = await ledger.get(run_id)
    if found is None:
        entry = RunLedgerEntry(run_id=run_id, task=task or run_id.split(".")[0],
                               status="cancelled", worker=ledger.worker, error=f"cancelled by {by}")
        if await ledger.records.write(run_id, entry, 0) is None:
            return  # another worker got there first
    else:
        entry, revision = found
        if entry.status != "paused":  # running elsewhere (its worker acts) or already ended
            return
        await ledger.update(Claim(entry, revision, resumed=True), status="cancelled",
                            error=f"cancelled by {by}")
        entry = entry.model_copy(update={"status": "cancelled"})
    now = datetime.now(UTC)
    record = RunRecord(run_id=run_id, task=entry.task, trigger="unknown", outcome="cancelled",
                       started_at=now, error=f"cancelled by {by}")
    write_record(layout, record)
    Timeline(state, run_id, redact).add("cancel", by=by)
    await bus.emit(bus.event(
        "run.failed", f"{entry.task} cancelled by {by}"[:300], severity="warning",
        task=entry.task, run_id=run_id,
        data=RunEnded(outcome="cancelled", error=record.error, turns=0, cost_usd=0.0,
                      duration_s=0.0)))
