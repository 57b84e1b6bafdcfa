"""Worker: takes run requests off `RUNS` and runs them as Claude Agent SDK sessions.

For each delivery: honour the shared limits (a rate-limit pause puts the run back; a spent cap
refuses it and says which), claim the run in the ledger (a run already finished is acknowledged
and dropped, so it completes once), run its remaining steps while sending progress acks, then
write the run record, the daily log line, the ledger's terminal status, spend, metrics and
events, in that order. The SDK and the timeline module are imported at the first run, not at
start (an idle worker stays small); the quota module at start, as its metrics (credit left,
forecast, window) must be on /metrics before any run for the dashboard and alerts.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Delivery
from koda.shared.errors import ConfigError, NoReply, Permanent, RetryLater
from koda.shared.events import BadEvent, CancelRequested, RunEnded, RunRetrying, RunSkipped, RunStarted
from koda.shared.home import LEARNINGS_CAP, HomeLayout
from koda.shared.lastgood import LastGood
from koda.shared.messages import ActionRequest, ActionResult, Event, RunLedgerEntry, RunRequest
from koda.shared.run_record import RunRecord
from koda.shared.service import Service
from koda.shared.tasks import Task, parse_tasks
from koda.shared.transcript import prune

from .cancel import SUBJECT as CANCEL_SUBJECT
from .cancel import RunsInHand
from .cli_process import launcher
from .gate import RESUME_PROMPT, ApprovalGate, refusal
from .ledger import Claim, Ledger
from .limits import Limits
from .options import SessionSpec, build_options, config_dir, sandbox_problem, sandbox_refusal
from .pipeline import PausedSession, Pipeline, RunOutcome
from .prompt import learnings_section, read_learnings, system_prompt
from .quota import Quota
from .records import append_daily_log, write_record
from .resources import CAUSES as RESOURCE_CAUSE_BY_ERRNO
from .resources import AlertGate, exhaustion
from .session import SessionResult, run_session
from .session_store import MirrorOnly, NatsSessionStore, call_answered
from .timeline import Timeline
from .tools import CONSOLIDATE_SKILL, KodaTools

if TYPE_CHECKING:
    from .admission import Admission

log = logging.getLogger(__name__)


@dataclass
class Unrunnable(Permanent):
    """A run no retry can help (its task is unknown, tasks.json unusable): fails at once."""

    cause: str = "config"

#: JetStream's own delivery bound for RUNS. Pauses re-queue a run without it being a failure,
#: so the worker counts failures (task retries) and crashes (ledger claims) itself.
CONSUMER_MAX_DELIVER = 1000
RESULT_CHARS = 1800
#: Failure causes no retry can help: the run fails on its first attempt, with the reason.
NO_RETRY = frozenset({"missing_secret", "no_handler", "config", "unapproved", "unknown_task",
                      "rejected"})
RESOURCE_CAUSES = frozenset(RESOURCE_CAUSE_BY_ERRNO.values()) | {"out_of_memory"}


class WorkerService(Service):
    name = "worker"

    async def setup(self) -> None:
        self.layout = HomeLayout(self.settings.expanded_home())
        config_dir(self.settings).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.sandbox_alerted = False
        if self.settings.claude_sandbox:
            await asyncio.to_thread(sandbox_problem)  # probe once, off the event loop
        self.ledger = Ledger(self.bus.kv["runs"], self.instance)
        self.limits = Limits(self.bus.kv["limits"], self.settings)
        self.tasks = LastGood(self.layout.tasks, self.settings.expanded_state(), self.name,
                              parse_tasks)
        self._tasks_stamp: int | None = None
        self.alerts = AlertGate()
        # Probes unshare/setpriv once, off the loop, before the first run needs the launcher.
        await asyncio.to_thread(launcher, self.settings.expanded_state())
        self.in_hand = RunsInHand()
        self.sessions = NatsSessionStore(self.bus)
        self._pruned_at = 0.0
        self._prune_transcripts()
        sub = await self.bus.nc.subscribe(CANCEL_SUBJECT, cb=self._on_cancel)
        self.stack.push_async_callback(sub.unsubscribe)
        r = self.registry
        self.m_runs = Counter("koda_runs_total", "Runs finished, by outcome", ["task", "outcome"], registry=r)
        self.m_duration = Histogram("koda_run_duration_seconds", "Run duration", ["task"], registry=r,
                                    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600))
        self.m_turns = Histogram("koda_run_turns", "Turns per run", ["task"], registry=r,
                                 buckets=(1, 2, 5, 10, 15, 20, 25, 30, 40, 50, 100))
        self.m_cost = Counter("koda_run_cost_usd_total", "Model spend", ["task"], registry=r)
        Gauge("koda_rate_limit_paused", "1 while runs are paused by a rate limit", registry=r) \
            .set_function(lambda: 1.0 if self.limits.paused_for() > 0 else 0.0)
        self.m_pauses = Counter("koda_rate_limit_pauses_total", "Rate-limit pause windows", registry=r)
        spend = Gauge("koda_spend_usd", "Spend in the current period", ["period"], registry=r)
        spend.labels("day").set_function(lambda: self._spend("day"))
        spend.labels("month").set_function(lambda: self._spend("month"))
        cap = Gauge("koda_spend_cap_usd", "Spend cap (0 = none)", ["period"], registry=r)
        cap.labels("day").set(self.settings.spend_cap_day_usd or 0)
        cap.labels("month").set(self.settings.spend_cap_month_usd or 0)
        self.quota = Quota(self.bus, self.settings, self.limits, self.layout, self.registry)

    def _spend(self, period: str) -> float:
        now = datetime.now(UTC)
        record = self.limits.last
        if period == "day":
            return record.spend_day.get(f"{now:%Y-%m-%d}", 0.0)
        return record.spend_month.get(f"{now:%Y-%m}", 0.0)

    async def run(self) -> None:
        await self.bus.consume(
            "RUNS", RunRequest, self.handle, stop=self.stopping,
            concurrency=self.settings.worker_concurrency, ack_wait=self.settings.worker_ack_wait,
            max_deliver=CONSUMER_MAX_DELIVER, in_flight=self.in_flight)

    # --- one delivery ----------------------------------------------------------------------

    def task_for(self, task_id: str) -> Task:
        """The task from tasks.json (the last good version if it broke, also across restarts);
        a skill name works too. Raises `Unrunnable` (with its cause) when no retry can help."""
        try:
            stamp: int | None = self.layout.tasks.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._tasks_stamp or self.tasks.value is None:
            self._tasks_stamp = stamp
            try:
                self.tasks.load()
            except ConfigError as exc:
                raise Unrunnable(f"tasks.json unusable: {exc}", "config") from exc
            if self.tasks.error is not None:
                log.warning("tasks.json unusable, running on the last good version: %s",
                            self.tasks.error)
        task = self.tasks.value.get(task_id) if self.tasks.value else None
        if task is None and self.layout.skill(task_id).is_file():
            task = Task(id=task_id, skill=task_id)  # e.g. consolidate-learnings, queued by a tool
        if task is None:
            raise Unrunnable(f"no task {task_id!r} in tasks.json and no skill of that name",
                             "unknown_task")
        return task

    def _jitter(self) -> float:
        return random.uniform(0, self.settings.rate_limit_jitter)

    async def handle(self, delivery: Delivery[RunRequest]) -> RetryLater | Permanent | None:
        request = delivery.message
        started_at, started = datetime.now(UTC), time.monotonic()
        try:
            task = self.task_for(request.task)
        except Unrunnable as exc:
            await self._emit_failed(request, "failed", str(exc), cause=exc.cause)
            return exc
        if await self._still_waiting(request):
            return None  # its decision publishes a request of its own
        refusal = await self.limits.check()
        if refusal is not None and refusal.retry_in is not None:
            return RetryLater(refusal.retry_in + self._jitter(), refusal.message)
        # A run a person has just decided on is resumed, not weighed again against the budget.
        admission = None if refusal or task.script or request.resume_approval \
            else await self.quota.admit(task, request, self.tasks.value)
        if admission is not None and admission.decision == "skip":
            await self.bus.emit(self.bus.event(
                "run.skipped", f"{task.id} skipped: {admission.reason}"[:300], task=task.id,
                run_id=request.run_id, data=RunSkipped(scheduled_for=request.scheduled_for,
                                                       reason=admission.reason, trigger=request.trigger)))
            return None
        if admission is not None and admission.wait_until is not None:
            return RetryLater(max(0.0, admission.wait_until - time.time()) + self._jitter(),
                              admission.reason)
        claim = await self.ledger.claim(request.run_id, task.id)
        if claim is None:
            log.info("run already finished; dropping the repeat", extra={"run_id": request.run_id})
            return None
        base = RunRecord(run_id=request.run_id, task=task.id, trigger=request.trigger, outcome="failed",
                         started_at=started_at, deliveries=delivery.attempt)
        if refusal is not None:
            return await self._finish(claim, base, "refused", started, error=refusal.message,
                                      request=request, limit=refusal.limit)
        if not task.script and (why := sandbox_refusal(self.settings)) is not None:
            await self._sandbox_alert(why)
            return await self._finish(claim, base, "failed", started, error=why, request=request)
        try:
            return await self._run_claimed(delivery, task, claim, base, started, admission)
        except Exception as exc:
            cause = exhaustion(exc)
            if cause is None:
                raise
            # A full disk or read-only home does not heal by delivering the run again.
            log.error("run hit %s", cause, extra={"run_id": request.run_id}, exc_info=True)
            return await self._finish(claim, base, "failed", started, request=request,
                                      error=f"{cause.replace('_', ' ')}: {exc}", cause=cause)

    async def _run_claimed(self, delivery: Delivery[RunRequest], task: Task, claim: Claim,
                           base: RunRecord, started: float,
                           admission: Admission | None) -> RetryLater | Permanent | None:
        request = delivery.message
        if claim.entry.claims > self.settings.max_deliver:
            return await self._finish(claim, base, "failed", started, request=request,
                                      error=f"cut short {claim.entry.claims} times (a crash each time?)")
        await self.bus.emit(self.bus.event(
            "run.started", f"{task.id} started", task=task.id, run_id=request.run_id,
            data=RunStarted(trigger=request.trigger, step=claim.entry.step, resumed=claim.resumed,
                            steps_done=claim.entry.steps_done)))
        timeline = Timeline(self.settings.expanded_state(), request.run_id, self.redact)
        timeline.add("start", task=task.id, trigger=request.trigger, attempt=claim.entry.attempt,
                     resumed=claim.resumed, step=claim.entry.step, requested_by=request.requested_by,
                     delivery=delivery.attempt)
        gate = ApprovalGate(self.bus, task, request.run_id, self.redact,
                            self.settings.approval_verify_key, timeline)
        tools = KodaTools(self.bus, self.layout, task, request.run_id, self.redact,
                          self.settings.worker_tool_timeout,
                          fence=lambda: self.ledger.superseded(claim), timeline=timeline, gate=gate)
        paused: PausedSession | None = None
        if not task.script and claim.entry.session_id and claim.entry.approval_id:
            decided = await self._decided(claim, timeline)
            if isinstance(decided, str):  # rejected or expired, and the task ends there
                return await self._finish(claim, base, "cancelled", started, request=request,
                                          error=decided, cause="rejected")
            paused = decided
            # What the paused session saved before it stopped belongs to this run's record too.
            drafts = self.layout.drafts / request.run_id
            tools.artifacts.extend(sorted(
                p.relative_to(self.layout.root).as_posix() for p in drafts.glob("*")
                if p.is_file() and not p.is_symlink()))
        ticker = asyncio.create_task(self._progress(delivery))
        if task.script:
            work = asyncio.ensure_future(self._script(task, request, claim, tools))
        else:
            pipeline = self._pipeline(task, request, claim, tools, timeline)
            pipeline.paused, pipeline.gate = paused, gate
            pipeline.session_store = MirrorOnly(self.sessions)
            if admission is not None:
                pipeline.turn_cap, pipeline.model = admission.max_turns, admission.model
            work = asyncio.ensure_future(pipeline.run(started + task.timeout_seconds))
        self.in_hand.tasks[request.run_id] = work
        try:
            outcome = await work
        except asyncio.CancelledError:
            by = self.in_hand.was_cancelled(request.run_id)
            current = asyncio.current_task()
            if by is None or (current is not None and current.cancelling()):
                # Shutdown cut the run short: leave it resumable, not "running" (a crash).
                timeline.add("notice", text="the worker stopped; the run resumes on redelivery")
                await asyncio.shield(self._quiet_update(claim, status="paused", error="worker stopped"))
                raise
            timeline.add("cancel", by=by)
            outcome = RunOutcome("cancelled", error=f"cancelled by {by}")
        finally:
            ticker.cancel()
            self.in_hand.tasks.pop(request.run_id, None)
        if task.id != CONSOLIDATE_SKILL and read_learnings(self.layout)[1] > LEARNINGS_CAP:
            await tools.queue_consolidation()  # also when the agent edited learnings.md itself
        await self.quota.account(task, outcome, self.tasks.value)
        if outcome.outcome == "awaiting_approval" and gate.paused is not None:
            await self._await_approval(task, claim, outcome, gate, timeline)
            return None
        if outcome.outcome == "rate_limited":
            retry = await self._rate_limited(task, claim, outcome)
            timeline.add("notice", text=f"{retry.reason}; runs again in {retry.delay:.0f}s")
            return retry
        attempts = task.retries.max + 1
        if (outcome.outcome == "failed" and outcome.cause not in NO_RETRY
                and claim.entry.attempt < attempts):
            retry = await self._retry(task, claim, outcome, attempts)
            timeline.add("notice", text=retry.reason)
            return retry
        record = base.model_copy(update={
            "turns": outcome.turns, "cost_usd": round(outcome.cost_usd, 6),
            "input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens,
            "artifacts": sorted(set(tools.artifacts) | _step_artifacts(self.layout, request.run_id,
                                                                         outcome)),
            "steps": outcome.steps, "result": self.redact(outcome.text)[:20_000]})
        finished = await self._finish(claim, record, outcome.outcome, started, error=outcome.error,
                                      request=request, cause=outcome.cause, attempts=attempts)
        timeline.add("end", outcome=outcome.outcome, error=record.error if outcome.error else None,
                     turns=record.turns, cost_usd=record.cost_usd, artifacts=record.artifacts)
        return finished

    async def _retry(self, task: Task, claim: Claim, outcome: RunOutcome,
                     attempts: int) -> RetryLater:
        """Put a failed attempt back for later, saying so where people look: the ledger (which
        the run record and console read), a `run.retrying` event and `koda run --wait`."""
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

    async def _still_waiting(self, request: RunRequest) -> bool:
        """True for a run paused at a gated call nobody has decided on yet."""
        found = await self.ledger.get(request.run_id)
        if found is None or found[0].status != "awaiting_approval" or not found[0].approval_id:
            return False
        got = await ApprovalStore(self.bus, self.redact).get(found[0].approval_id)
        if got is not None and got[0].status == "pending":
            log.info("run waits for approval %s; delivery dropped", found[0].approval_id,
                     extra={"run_id": request.run_id})
            return True
        return False

    async def _decided(self, claim: Claim, timeline: Timeline) -> PausedSession | str:
        """How a paused session goes on: resumed (its transcript restored from NATS into this
        worker's CLI folder), or, for a rejection the task ends on, the reason it ends."""
        entry = claim.entry
        assert entry.session_id and entry.approval_id
        got = await ApprovalStore(self.bus, self.redact).get(entry.approval_id)
        task = self.task_for(entry.task)
        record = got[0] if got else None
        if record is not None and record.status in ("rejected", "expired") \
                and task.on_rejection == "end":
            timeline.add("notice", text=f"run ends: {refusal(record)}")
            return refusal(record)
        entries = await self.sessions.restore(entry.session_id, self.layout.root,
                                              config_dir(self.settings))
        answered = record is not None and record.tool_use_id is not None \
            and call_answered(entries, record.tool_use_id)
        status = record.status if record else "gone"
        timeline.add("notice", text=f"approval {entry.approval_id} {status}: session "
                     f"{entry.session_id} resumes on {self.instance}")
        return PausedSession(entry.session_id, RESUME_PROMPT if answered else None)

    async def _await_approval(self, task: Task, claim: Claim, outcome: RunOutcome,
                              gate: ApprovalGate, timeline: Timeline) -> None:
        """The session stopped at a gated call: the run waits, holding nothing (the delivery
        is acknowledged; the decision queues the run again)."""
        record = gate.paused
        assert record is not None
        await self.ledger.update(claim, status="awaiting_approval", approval_id=record.id,
                                 session_id=outcome.session_id or record.session_id, error=None)
        timeline.add("notice", text=f"waiting for approval {record.id} ({record.action})")
        await self.bus.emit(self.bus.event(
            "run.awaiting_approval", f"{task.id} waits for approval of {record.action}"[:300],
            task=task.id, run_id=claim.entry.run_id,
            data={"approval_id": record.id, "action": record.action, "tool": record.tool,
                  "session_id": outcome.session_id or record.session_id,
                  "expires_at": record.expires_at.isoformat() if record.expires_at else None}))

    def _pipeline(self, task: Task, request: RunRequest, claim: Claim, tools: KodaTools,
                  timeline: Timeline) -> Pipeline:
        def on_step(step: str) -> None:
            tools.step = step
            if tools.gate is not None:
                tools.gate.step = step
            timeline.step(step, claim.entry.step)

        async def session(prompt: str | None, spec: SessionSpec, left: float) -> SessionResult:
            await self.ledger.check(claim)  # no model request from an attempt taken over
            # The first import of the SDK takes seconds on a busy host: off the loop, so the
            # progress acks go on and JetStream does not hand the run to a second attempt.
            await asyncio.to_thread(importlib.import_module, "claude_agent_sdk")
            spec.fence = lambda: self.ledger.superseded(claim)
            options = build_options(self.settings, self.layout, spec, tools.server())
            result = await run_session(prompt, options, timeout=left, on_message=timeline.on_message)
            timeline.session_end(result)
            if result.cost_usd:  # counted per session: an attempt cut short later still paid
                await self.limits.add_spend(result.cost_usd)
                self.m_cost.labels(task.id).inc(result.cost_usd)
            return result

        return Pipeline(task, request, self.ledger, claim, self.layout.drafts / request.run_id,
                        lambda skill: system_prompt(self.layout, skill), session, on_step,
                        learnings=lambda: learnings_section(self.layout))

    async def _script(self, task: Task, request: RunRequest, claim: Claim, tools: KodaTools) -> RunOutcome:
        """A script task runs no model: the actions service runs the script, once per attempt."""
        key = f"run:{request.run_id}:{claim.entry.attempt}"
        await self.ledger.check(claim)
        action = ActionRequest(name=f"script.{task.script}", idempotency_key=key, run_id=request.run_id,
                               requested_by=f"task:{task.id}")
        try:
            reply = await self.bus.request(f"koda.actions.script.{task.script}", action,
                                           ActionResult, timeout=task.timeout_seconds, msg_id=key)
        except NoReply as exc:
            return RunOutcome("failed", error=str(exc))
        if not reply.ok:
            return RunOutcome("failed", text=reply.output, cause=reply.cause,
                              error=reply.error or f"script exited with {reply.exit_code}")
        return RunOutcome("done", text=reply.output)

    async def _sandbox_alert(self, why: str) -> None:
        """One alert per worker process: every refused run also fails with the reason."""
        if self.sandbox_alerted:
            return
        self.sandbox_alerted = True
        log.error("agent sandbox unavailable", extra={"reason": why})
        await self.bus.emit(self.bus.event("alert", f"Worker refuses agent runs: {why}"[:1000],
                                           data={"source": "worker", "kind": "sandbox_unavailable"}))

    async def _progress(self, delivery: Delivery[RunRequest]) -> None:
        """Tell JetStream the run is alive, well inside its ack deadline."""
        while True:
            await asyncio.sleep(self.settings.worker_ack_wait / 3)
            try:
                await delivery.progress()
            except Exception as exc:
                log.warning("progress ack failed: %s", exc)

    async def _rate_limited(self, task: Task, claim: Claim, outcome: RunOutcome) -> RetryLater:
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
                data={"kind": "rate_limit", "pause_until": resume_at.isoformat(), "reason": reason}))
        await self.ledger.update(claim, status="paused", error=reason)
        return RetryLater(max(0.0, until - now) + self._jitter(), reason)

    async def _finish(self, claim: Claim, record: RunRecord, outcome: str, started: float, *,
                      request: RunRequest, error: str | None = None, limit: str | None = None,
                      cause: str | None = None,
                      attempts: int | None = None) -> RetryLater | Permanent | None:
        """Record a terminal outcome: file, daily log, ledger, metrics, event. Acks the message.

        A record the home cannot take (full, read-only) still ends the run: the ledger and the
        event say `failed` and why, and the operator gets one alert per cause.
        """
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
        status = {"done": "done", "turn_cap": "turn_cap", "cancelled": "cancelled"}.get(outcome, "failed")
        await self.ledger.update(claim, status=status, error=record.error,
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
        self._prune_transcripts()
        return None

    async def _resource_alert(self, cause: str, record: RunRecord) -> None:
        if not self.alerts.open(cause):
            return
        await self.bus.emit(self.bus.event(
            "alert", f"Runs are failing: {cause.replace('_', ' ')} in {self.layout.root} "
            f"({record.error})"[:300], severity="critical", task=record.task, run_id=record.run_id,
            data={"kind": f"resource.{cause}", "cause": cause, "error": record.error,
                  "home": str(self.layout.root)}))

    def _prune_transcripts(self) -> None:
        """Drop transcripts older than the audit log keeps events (at most once an hour)."""
        if time.monotonic() - self._pruned_at < 3600 and self._pruned_at:
            return
        self._pruned_at = time.monotonic()
        try:
            prune(self.settings.expanded_state(), self.settings.transcript_max_age_days)
        except OSError as exc:
            log.warning("could not prune run transcripts: %s", exc)

    async def _on_cancel(self, msg: Any) -> None:
        """A cancel request: stop the run if it is ours; finish it if nobody holds it."""
        try:
            event = Event.from_bytes(msg.data)
        except ValueError:
            return
        try:
            by = CancelRequested.of(event).requested_by or event.service
        except BadEvent as exc:
            log.warning("%s", exc)
            return
        run_id = event.run_id
        if not run_id or self.in_hand.cancel(run_id, by):
            return
        try:
            await self._cancel_idle(run_id, event.task, by)
        except Exception as exc:  # another worker got there first, or the bus went away
            log.info("cancel not applied here: %r", exc, extra={"run_id": run_id})

    async def _cancel_idle(self, run_id: str, task: str | None, by: str) -> None:
        found = await self.ledger.get(run_id)
        if found is None:  # queued, not yet claimed: a terminal entry makes its delivery a no-op
            entry = RunLedgerEntry(run_id=run_id, task=task or run_id.split(".")[0],
                                   status="cancelled", worker=self.instance, error=f"cancelled by {by}")
            if await self.ledger.records.write(run_id, entry, 0) is None:
                return  # another worker got there first
        else:
            entry, revision = found
            if entry.status != "paused":  # running elsewhere (its worker acts) or already ended
                return
            await self.ledger.update(Claim(entry, revision, resumed=True), status="cancelled",
                                     error=f"cancelled by {by}")
            entry = entry.model_copy(update={"status": "cancelled"})
        now = datetime.now(UTC)
        record = RunRecord(run_id=run_id, task=entry.task, trigger="unknown", outcome="cancelled",
                           started_at=now, error=f"cancelled by {by}")
        write_record(self.layout, record)
        Timeline(self.settings.expanded_state(), run_id, self.redact).add("cancel", by=by)
        await self.bus.emit(self.bus.event(
            "run.failed", f"{entry.task} cancelled by {by}"[:300], severity="warning",
            task=entry.task, run_id=run_id,
            data=RunEnded(outcome="cancelled", error=record.error, turns=0, cost_usd=0.0,
                          duration_s=0.0)))

    async def _emit_failed(self, request: RunRequest, outcome: str, error: str,
                           cause: str | None = None) -> None:
        await self.bus.emit(self.bus.event(
            "run.failed", f"{request.task} {outcome}: {error}"[:300], severity="warning",
            task=request.task, run_id=request.run_id,
            data=RunEnded(outcome=outcome, error=error, reply_to=request.reply_to, cause=cause,
                          attempt=1)))

    async def _quiet_update(self, claim: Claim, **changes: Any) -> None:
        try:
            await self.ledger.update(claim, **changes)
        except Exception:
            pass


def _step_artifacts(layout: HomeLayout, run_id: str, outcome: RunOutcome) -> set[str]:
    drafts = layout.drafts / run_id
    return {(drafts / s.artifact).relative_to(layout.root).as_posix()
            for s in outcome.steps if s.artifact and (drafts / s.artifact).exists()}


SERVICE = WorkerService
