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
from typing import Any

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
