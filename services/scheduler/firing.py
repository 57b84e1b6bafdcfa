"""One fire: decide (paused? still running?), publish the run request durably, record it.

The JetStream message id `<task>:<scheduled epoch ms>` makes a second publish of the same fire
(a restarted or competing scheduler) a no-op, so a fire is decided here at most once in effect.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from koda.shared.bus import Bus
from koda.shared.events import RunSkipped
from koda.shared.messages import RunRequest, SchedulerFire, new_run_id

from .batching import BatchPublisher
from .clock import Clock
from .metrics import SchedulerMetrics
from .records import FireRecords
from .schedule import ScheduledTask, epoch_ms
from .watches import ActiveRuns, PausedTasks

log = logging.getLogger(__name__)
Decision = Literal["fired", "skipped", "paused", "duplicate"]


def fire_ids(task: str, scheduled: datetime) -> tuple[str, str]:
    """(run id, JetStream message id) of a cron or catch-up fire, as docs/contracts.md fixes."""
    return new_run_id(task, "cron", scheduled), f"{task}:{epoch_ms(scheduled)}"


class Firer:
    """Publishes fires for the leader."""

    def __init__(self, bus: Bus, metrics: SchedulerMetrics, clock: Clock,
                 paused: PausedTasks, active: ActiveRuns, records: FireRecords) -> None:
        self.bus = bus
        self.records = records
        self.metrics = metrics
        self.clock = clock
        self.paused = paused
        self.active = active
        self.publisher = BatchPublisher(bus.nc, bus.js)

    async def fire(self, sched: ScheduledTask, scheduled: datetime, due: datetime,
                   trigger: Literal["cron", "catch_up"] = "cron") -> Decision:
        task = sched.task
        run_id, msg_id = fire_ids(task.id, scheduled)
        decision: Decision = "fired"
        if task.id in self.paused.ids:
            decision = "paused"
            self.metrics.skipped.labels(task.id, "paused").inc()
        elif task.overlap != "allow" and await self._still_going(task.id, task.overlap):
            decision = "skipped"
            self.metrics.skipped.labels(task.id, "overlap").inc()
            await self.bus.emit(self.bus.event(
                "run.skipped", f"{task.id}: fire at {scheduled.isoformat()} skipped, the last run "
                f"is still going (overlap {task.overlap})", task=task.id, run_id=run_id,
                data=RunSkipped(scheduled_for=scheduled, reason="overlap", overlap=task.overlap,
                                trigger=trigger)))
        else:
            request = RunRequest(task=task.id, run_id=run_id, scheduled_for=scheduled,
                                 trigger=trigger, requested_by="scheduler")
            duplicate = await self.publisher.publish(f"koda.runs.{task.id}", request.to_bytes(),
                                                     msg_id)
            if trigger == "cron":
                lateness = (self.clock.now() - due).total_seconds()
                self.metrics.lateness.observe(max(0.0, lateness))
            if duplicate:  # another scheduler (or our previous life) published it already
                decision = "duplicate"
            else:
                self.metrics.fires.labels(task.id, trigger).inc()
        self.record(task.id, scheduled, run_id, decision)
        return decision

    def record(self, task: str, scheduled: datetime, run_id: str, decision: str) -> None:
        """Keep the last decided fire, so a restart knows where catching up starts."""
        self.records.note(SchedulerFire(task=task, last_fire=scheduled, run_id=run_id,
                                        decision=decision))

    async def _still_going(self, task: str, overlap: str) -> bool:
        """Is a run of `task` in progress (ledger) or waiting in RUNS?

        `skip` wants neither; `queue_one` accepts one running but not one already waiting.
        """
        running = self.active.running(task)
        if overlap == "skip" and running:
            return True
        info = await self.bus.js.stream_info("RUNS", subjects_filter=f"koda.runs.{task}")
        queued = sum((info.state.subjects or {}).values())
        # A request being worked on stays in the work queue until acked: it is one of `running`.
        waiting = queued - running
        return bool(running or queued) if overlap == "skip" else waiting >= 1
