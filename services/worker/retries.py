"""A failed or rate-limited attempt put back for later, said where people look.

A retryable failure is delivered again after the task's backoff (doubling per attempt); the
ledger (which the run record and console read), a `run.retrying` event and `koda run --wait`
say "attempt 1/3 failed: reason; next in 120 s". A rate limit pauses every agent run on the
shared `limits` record until its window resets, with one alert per pause window.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from koda.shared.bus import Bus
from koda.shared.errors import RetryLater
from koda.shared.events import AlertEvent, RunRetrying
from koda.shared.secrets import Redactor
from koda.shared.settings import KodaSettings
from koda.shared.tasks import Task

from .ledger import Claim, Ledger
from .limits import Limits
from .pipeline import RunOutcome

#: Failure causes no retry can help: the run fails on its first attempt, with the reason.
NO_RETRY = frozenset({"missing_secret", "no_handler", "config", "unapproved", "unknown_task",
                      "rejected"})


class Retries:
    """Schedules the next attempt of a run (a failure) or of every agent run (a rate limit)."""

    def __init__(self, bus: Bus, ledger: Ledger, limits: Limits, settings: KodaSettings,
                 redact: Redactor, registry: CollectorRegistry) -> None:
        self.bus, self.ledger, self.limits = bus, ledger, limits
        self.settings, self.redact = settings, redact
        self.m_pauses = Counter("koda_rate_limit_pauses_total", "Rate-limit pause windows",
                                registry=registry)

    def jitter(self) -> float:
        """Spreads runs put back together so they do not all return at the same instant."""
        return random.uniform(0, self.settings.rate_limit_jitter)

    @staticmethod
    def wanted(outcome: RunOutcome, attempt: int, attempts: int) -> bool:
        """Whether a finished attempt should run again rather than end the run."""
        return outcome.outcome == "failed" and outcome.cause not in NO_RETRY and attempt < attempts

    async def retry(self, task: Task, claim: Claim, outcome: RunOutcome,
                    attempts: int) -> RetryLater:
        attempt = claim.entry.attempt
        delay = task.retries.backoff_seconds * 2 ** (attempt - 1)
        reason = self.redact(outcome.error or "failed")
        note = f"attempt {attempt}/{attempts} failed: {reason}; next in {delay:.0f} s"
        next_at = datetime.now(UTC) + timedelta(seconds=delay)
        await self.ledger.update(claim, status="paused", attempt=attempt + 1, error=note,
                                 attempts=attempts, next_attempt_at=next_at)
        await self.bus.emit(self.bus.event(
            "run.retrying", note[:300], severity="warning", task=task.id, run_id=claim.entry.run_id,
            data=RunRetrying(attempt=attempt, attempts=attempts, error=reason, next_in_s=delay,
                             next_attempt_at=next_at, note=note)))
        return RetryLater(delay, note)

    async def rate_limited(self, task: Task, claim: Claim, outcome: RunOutcome) -> RetryLater:
        last = outcome.last
        now = time.time()
        if last and last.resets_at and last.resets_at > now:
            until = last.resets_at  # the subscription said when its window resets
        else:  # an API 429: its retry-after (as the CLI reports it) or our backoff, the longer
            until = now + max(last.retry_after or 0.0 if last else 0.0, self.settings.rate_limit_backoff)
        reason = f"rate limited ({outcome.error})"
        if await self.limits.pause(until, reason):
            self.m_pauses.inc()
            resume_at = datetime.fromtimestamp(until, UTC)
            await self.bus.emit(self.bus.event(
                "alert", f"Rate limit hit: agent runs paused until {resume_at:%H:%M:%S} UTC",
                severity="warning", task=task.id, run_id=claim.entry.run_id,
                data=AlertEvent(kind="rate_limit", pause_until=resume_at, reason=reason)))
        await self.ledger.update(claim, status="paused", error=reason)
        return RetryLater(max(0.0, until - now) + self.jitter(), reason)
