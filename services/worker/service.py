"""Worker: takes run requests off `RUNS` and runs them as Claude Agent SDK sessions.

For each delivery: honour the shared limits (a rate-limit pause puts the run back; a spent cap
refuses it and says which), claim the run in the ledger (a run already finished is acknowledged
and dropped, so it completes once), run its remaining steps while sending progress acks, then
end it (finish.py: record, daily log line, ledger, metrics, event), put it back for another
attempt (retries.py), or park it at a gated call until a person decides (paused_runs.py). The
SDK is imported at the first run, not at start.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from koda.shared.bus import Delivery
from koda.shared.errors import NoReply, Permanent, RetryLater
from koda.shared.events import AlertEvent, BadEvent, CancelRequested, RunSkipped, RunStarted
from koda.shared.home import LEARNINGS_CAP, HomeLayout
from koda.shared.messages import ActionRequest, ActionResult, Event, RunRequest
from koda.shared.run_record import RunRecord
from koda.shared.service import Service
from koda.shared.tasks import Task

from .admission import Admission
from .cancel import SUBJECT as CANCEL_SUBJECT
from .cancel import RunsInHand, cancel_idle
from .cli_process import launcher
from .finish import RunFinisher, step_artifacts
from .gate import ApprovalGate
from .ledger import Claim, Ledger
from .limits import Limits
from .options import SessionSpec, build_options, config_dir, sandbox_problem, sandbox_refusal
from .paused_runs import PausedRuns
from .pipeline import PausedSession, Pipeline, RunOutcome
from .prompt import learnings_section, read_learnings, system_prompt
from .quota import Quota
from .resources import exhaustion
from .retries import Retries
from .session import SessionResult, run_session
from .session_store import MirrorOnly, NatsSessionStore
from .task_lookup import TaskLookup, Unrunnable
from .timeline import Timeline
from .tools import CONSOLIDATE_SKILL, KodaTools

log = logging.getLogger(__name__)


#: JetStream's own delivery bound for RUNS. Pauses re-queue a run without it being a failure,
#: so the worker counts failures (task retries) and crashes (ledger claims) itself.
CONSUMER_MAX_DELIVER = 1000


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
        self.lookup = TaskLookup(self.layout, self.settings.expanded_state(), self.bus.kv["config"])
        # Probes unshare/setpriv once, off the loop, before the first run needs the launcher.
        await asyncio.to_thread(launcher, self.settings.expanded_state())
        self.in_hand = RunsInHand()
        self.sessions = NatsSessionStore(self.bus)
        self.paused = PausedRuns(self.bus, self.ledger, self.sessions, self.layout, self.settings,
                                 self.redact, self.instance)
        r = self.registry
        self.finisher = RunFinisher(self.bus, self.ledger, self.layout, self.settings, self.redact, r)
        self.retries = Retries(self.bus, self.ledger, self.limits, self.settings, self.redact, r)
        self.finisher.prune_transcripts()
        sub = await self.bus.nc.subscribe(CANCEL_SUBJECT, cb=self._on_cancel)
        self.stack.push_async_callback(sub.unsubscribe)
        self.quota = Quota(self.bus, self.settings, self.limits, self.layout, r)
        self.m_cost = Counter("koda_run_cost_usd_total", "Model spend", ["task"], registry=r)
        Gauge("koda_rate_limit_paused", "1 while runs are paused by a rate limit", registry=r) \
            .set_function(lambda: 1.0 if self.limits.paused_for() > 0 else 0.0)
        spend = Gauge("koda_spend_usd", "Spend in the current period", ["period"], registry=r)
        spend.labels("day").set_function(lambda: self._spend("day"))
        spend.labels("month").set_function(lambda: self._spend("month"))
        cap = Gauge("koda_spend_cap_usd", "Spend cap (0 = none)", ["period"], registry=r)
        cap.labels("day").set(self.settings.spend_cap_day_usd or 0)
        cap.labels("month").set(self.settings.spend_cap_month_usd or 0)

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

    async def handle(self, delivery: Delivery[RunRequest]) -> RetryLater | Permanent | None:
        request = delivery.message
        started_at, started = datetime.now(UTC), time.monotonic()
        try:
            task = await self.lookup.find(request.task)
        except Unrunnable as exc:
            await self.finisher.unclaimed_failed(request, "failed", str(exc), cause=exc.cause)
            return exc
        if await self.paused.still_waiting(request):
            return None  # its decision publishes a request of its own
        refusal = await self.limits.check()
        if refusal is not None and refusal.retry_in is not None:
            return RetryLater(refusal.retry_in + self.retries.jitter(), refusal.message)
        # A run a person has just decided on is resumed, not weighed again against the budget.
        admission = None if refusal or task.script or request.resume_approval \
            else await self.quota.admit(task, request, self.lookup.tasks)
        if admission is not None and admission.decision == "skip":
            await self.bus.emit(self.bus.event(
                "run.skipped", f"{task.id} skipped: {admission.reason}"[:300], task=task.id,
                run_id=request.run_id, data=RunSkipped(scheduled_for=request.scheduled_for,
                                                       reason=admission.reason, trigger=request.trigger)))
            return None
        if admission is not None and admission.wait_until is not None:
            return RetryLater(max(0.0, admission.wait_until - time.time()) + self.retries.jitter(),
                              admission.reason)
        claim = await self.ledger.claim(request.run_id, task.id)
        if claim is None:
            log.info("run already finished; dropping the repeat", extra={"run_id": request.run_id})
            return None
        base = RunRecord(run_id=request.run_id, task=task.id, trigger=request.trigger, outcome="failed",
                         started_at=started_at, deliveries=delivery.attempt)
        if refusal is not None:
            await self.finisher.finish(claim, base, "refused", started, error=refusal.message,
                                       request=request, limit=refusal.limit)
            return None
        if not task.script and (why := sandbox_refusal(self.settings)) is not None:
            await self._sandbox_alert(why)
            await self.finisher.finish(claim, base, "failed", started, error=why, request=request)
            return None
        try:
            return await self._run_claimed(delivery, task, claim, base, started, admission)
        except Exception as exc:
            cause = exhaustion(exc)
            if cause is None:
                raise
            # A full disk or read-only home does not heal by delivering the run again.
            log.error("run hit %s", cause, extra={"run_id": request.run_id}, exc_info=True)
            await self.finisher.finish(claim, base, "failed", started, request=request,
                                       error=f"{cause.replace('_', ' ')}: {exc}", cause=cause)
            return None

    async def _run_claimed(self, delivery: Delivery[RunRequest], task: Task, claim: Claim,
                           base: RunRecord, started: float,
                           admission: Admission | None) -> RetryLater | Permanent | None:
        request = delivery.message
        if claim.entry.claims > self.settings.max_deliver:
            await self.finisher.finish(claim, base, "failed", started, request=request,
                                       error=f"cut short {claim.entry.claims} times (a crash each time?)")
            return None
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
            decided = await self.paused.decided(claim, task, timeline)
            if isinstance(decided, str):  # rejected or expired, and the task ends there
                await self.finisher.finish(claim, base, "cancelled", started, request=request,
                                           error=decided, cause="rejected")
                return None
            paused = decided
            tools.artifacts.extend(self.paused.saved_drafts(request.run_id))
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
        await self.quota.account(task, outcome, self.lookup.tasks)
        if outcome.outcome == "awaiting_approval" and gate.paused is not None:
            await self.paused.park(task, claim, outcome, gate, timeline)
            return None
        if outcome.outcome == "rate_limited":
            retry = await self.retries.rate_limited(task, claim, outcome)
            timeline.add("notice", text=f"{retry.reason}; runs again in {retry.delay:.0f}s")
            return retry
        attempts = task.retries.max + 1
        if self.retries.wanted(outcome, claim.entry.attempt, attempts):
            retry = await self.retries.retry(task, claim, outcome, attempts)
            timeline.add("notice", text=retry.reason)
            return retry
        record = base.model_copy(update={
            "turns": outcome.turns, "cost_usd": round(outcome.cost_usd, 6),
            "input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens,
            "artifacts": sorted(set(tools.artifacts) | step_artifacts(self.layout, request.run_id,
                                                                        outcome)),
            "steps": outcome.steps, "result": self.redact(outcome.text)[:20_000]})
        await self.finisher.finish(claim, record, outcome.outcome, started, error=outcome.error,
                                   request=request, cause=outcome.cause, attempts=attempts)
        timeline.add("end", outcome=outcome.outcome, error=record.error if outcome.error else None,
                     turns=record.turns, cost_usd=record.cost_usd, artifacts=record.artifacts)
        return None

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
                                           data=AlertEvent(source="worker", kind="sandbox_unavailable")))

    async def _progress(self, delivery: Delivery[RunRequest]) -> None:
        """Tell JetStream the run is alive, well inside its ack deadline."""
        while True:
            await asyncio.sleep(self.settings.worker_ack_wait / 3)
            try:
                await delivery.progress()
            except Exception as exc:
                log.warning("progress ack failed: %s", exc)

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
            await cancel_idle(self.bus, self.ledger, self.layout, self.settings.expanded_state(),
                              self.redact, run_id, event.task, by)
        except Exception as exc:  # another worker got there first, or the bus went away
            log.info("cancel not applied here: %r", exc, extra={"run_id": run_id})

    async def _quiet_update(self, claim: Claim, **changes: Any) -> None:
        try:
            await self.ledger.update(claim, **changes)
        except Exception:
            pass


SERVICE = WorkerService
