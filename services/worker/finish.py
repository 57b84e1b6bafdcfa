"""Ending a run: the record file, the daily log line, the ledger's terminal status, metrics and
the `run.finished` / `run.failed` event, in that order.

A record the home cannot take (full, read-only) still ends the run: the ledger and the event say
`failed` and why, and the operator gets one alert per cause, not one per run.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from koda.shared.bus import Bus
from koda.shared.events import AlertEvent, RunEnded
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from koda.shared.run_record import RunRecord
from koda.shared.secrets import Redactor
from koda.shared.settings import KodaSettings
from koda.shared.transcript import prune

from .ledger import Claim, Ledger
from .pipeline import RunOutcome
from .records import append_daily_log, write_record
from .resources import CAUSES as RESOURCE_CAUSE_BY_ERRNO
from .resources import AlertGate, exhaustion

log = logging.getLogger(__name__)
RESULT_CHARS = 1800
RESOURCE_CAUSES = frozenset(RESOURCE_CAUSE_BY_ERRNO.values()) | {"out_of_memory"}
#: Ledger status for each terminal outcome; anything else ends `failed`.
STATUS = {"done": "done", "turn_cap": "turn_cap", "cancelled": "cancelled"}


class RunFinisher:
    """Records terminal outcomes for one worker; owns the per-run metrics and resource alerts."""

    def __init__(self, bus: Bus, ledger: Ledger, layout: HomeLayout, settings: KodaSettings,
                 redact: Redactor, registry: CollectorRegistry) -> None:
        self.bus, self.ledger, self.layout = bus, ledger, layout
        self.settings, self.redact = settings, redact
        self.alerts = AlertGate()
        self._pruned_at = 0.0
        r = registry
        self.m_runs = Counter("koda_runs_total", "Runs finished, by outcome", ["task", "outcome"], registry=r)
        self.m_duration = Histogram("koda_run_duration_seconds", "Run duration", ["task"], registry=r,
                                    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600))
        self.m_turns = Histogram("koda_run_turns", "Turns per run", ["task"], registry=r,
                                 buckets=(1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 100))

    async def finish(self, claim: Claim, record: RunRecord, outcome: str, started: float, *,
                     request: RunRequest, error: str | None = None, limit: str | None = None,
                     cause: str | None = None, attempts: int | None = None) -> None:
        """Record a terminal outcome of a claimed run (the caller then acks the message)."""
        record = record.model_copy(update={
            "outcome": outcome, "error": self.redact(error) if error else None,
            "finished_at": datetime.now(UTC), "duration_s": round(time.monotonic() - started, 3)})
        await self.ledger.check(claim)
        try:
            write_record(self.layout, record)
            append_daily_log(self.layout, record)
        except Exception as exc:
            cause = exhaustion(exc)
            if cause is None:
                raise
            reason = f"{cause.replace('_', ' ')}: could not write the run record: {exc}"
            log.error("run record not written", extra={"run_id": record.run_id, "error": str(exc)})
            outcome = "failed"
            record = record.model_copy(update={"outcome": outcome, "error": self.redact(
                f"{record.error}; {reason}" if record.error and record.outcome == "failed" else reason)})
        resource = cause in RESOURCE_CAUSES
        if resource and cause:
            await self._resource_alert(cause, record)
        await self.ledger.update(claim, status=STATUS.get(outcome, "failed"), error=record.error,
                                 cause="resource" if resource else cause, next_attempt_at=None)
        self.m_runs.labels(record.task, outcome).inc()
        self.m_duration.labels(record.task).observe(record.duration_s)
        self.m_turns.labels(record.task).observe(record.turns)
        data = RunEnded(
            outcome=outcome, turns=record.turns, cost_usd=record.cost_usd,
            duration_s=record.duration_s, artifacts=record.artifacts,
            result=record.result[:RESULT_CHARS], reply_to=request.reply_to,
            steps=[s.id for s in record.steps], error=record.error or None, limit=limit or None,
            attempt=claim.entry.attempt, attempts=attempts or claim.entry.attempts,
            cause="resource" if resource else cause, resource=cause if resource else None)
        kind = "run.finished" if outcome == "done" else "run.failed"
        summary = f"{record.task} {outcome}" + (f": {record.error}" if record.error else "")
        await self.bus.emit(self.bus.event(kind, summary[:300], task=record.task, run_id=record.run_id,
                                           severity="info" if outcome == "done" else "warning",
                                           data=data))
        log.info("run finished", extra={"run_id": record.run_id, "outcome": outcome})
        self.prune_transcripts()

    async def unclaimed_failed(self, request: RunRequest, outcome: str, error: str,
                               cause: str | None = None) -> None:
        """A run that failed before it was claimed (no task, no usable tasks.json): only the event."""
        await self.bus.emit(self.bus.event(
            "run.failed", f"{request.task} {outcome}: {error}"[:300], severity="warning",
            task=request.task, run_id=request.run_id,
            data=RunEnded(outcome=outcome, error=error, reply_to=request.reply_to, cause=cause,
                          attempt=1)))

    async def _resource_alert(self, cause: str, record: RunRecord) -> None:
        if not self.alerts.open(cause):
            return
        await self.bus.emit(self.bus.event(
            "alert", f"Runs are failing: {cause.replace('_', ' ')} in {self.layout.root} "
            f"({record.error})"[:300], severity="critical", task=record.task, run_id=record.run_id,
            data=AlertEvent(kind=f"resource.{cause}", cause=cause, error=record.error,
                            home=str(self.layout.root))))

    def prune_transcripts(self) -> None:
        """Drop transcripts older than the audit log keeps events (at most once an hour)."""
        if time.monotonic() - self._pruned_at < 3600 and self._pruned_at:
            return
        self._pruned_at = time.monotonic()
        try:
            prune(self.settings.expanded_state(), self.settings.transcript_max_age_days)
        except OSError as exc:
            log.warning("could not prune run transcripts: %s", exc)


def step_artifacts(layout: HomeLayout, run_id: str, outcome: RunOutcome) -> set[str]:
    """The artifacts the run's steps left in its drafts folder, relative to the home."""
    drafts = layout.drafts / run_id
    return {(drafts / s.artifact).relative_to(layout.root).as_posix()
            for s in outcome.steps if s.artifact and (drafts / s.artifact).exists()}
