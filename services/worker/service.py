"""Worker: takes run requests off `RUNS` and runs them as Claude Agent SDK sessions.

For each delivery: honour the shared limits (a rate-limit pause puts the run back; a spent cap
refuses it and says which), claim the run in the ledger (a run already finished is acknowledged
and dropped, so it completes once), run its remaining steps while sending progress acks, then
write the run record, the daily log line, the ledger's terminal status, spend, metrics and
events, in that order. The SDK is imported at the first run, not at start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from koda.shared.bus import Delivery
from koda.shared.errors import ConfigError, Permanent, RetryLater
from koda.shared.home import LEARNINGS_CAP, HomeLayout
from koda.shared.messages import ActionRequest, ActionResult, Event, RunLedgerEntry, RunRequest
from koda.shared.service import Service
from koda.shared.tasks import Task, TasksFile, load_tasks
from koda.shared.transcript import prune

from .cancel import SUBJECT as CANCEL_SUBJECT
from .cancel import RunsInHand
from .ledger import Claim, Ledger
from .limits import Limits
from .options import SessionSpec, build_options
from .pipeline import Pipeline, RunOutcome
from .prompt import read_learnings, system_prompt
from .records import RunRecord, append_daily_log, write_record
from .session import SessionResult, run_session
from .timeline import Timeline
from .tools import CONSOLIDATE_SKILL, KodaTools

log = logging.getLogger(__name__)
#: JetStream's own delivery bound for RUNS. Pauses re-queue a run without it being a failure,
#: so the worker counts failures (task retries) and crashes (ledger claims) itself.
CONSUMER_MAX_DELIVER = 1000
RESULT_CHARS = 1800


class WorkerService(Service):
    name = "worker"

    async def setup(self) -> None:
        self.layout = HomeLayout(self.settings.expanded_home())
        self.ledger = Ledger(self.bus.kv["runs"], self.instance)
        self.limits = Limits(self.bus.kv["limits"], self.settings)
        self._tasks: tuple[float, TasksFile] | None = None
        self.in_hand = RunsInHand()
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
        """The task from tasks.json (last good version if it broke); a skill name works too."""
        try:
            mtime = self.layout.tasks.stat().st_mtime
            if self._tasks is None or self._tasks[0] != mtime:
                self._tasks = (mtime, load_tasks(self.layout.tasks))
        except (ConfigError, FileNotFoundError) as exc:
            if self._tasks is None:
                raise Permanent(f"tasks.json unusable: {exc}") from exc
            log.warning("tasks.json unusable, using the last good version: %s", exc)
        task = self._tasks[1].get(task_id) if self._tasks else None
        if task is None and self.layout.skill(task_id).is_file():
            task = Task(id=task_id, skill=task_id)  # e.g. consolidate-learnings, queued by a tool
        if task is None:
            raise Permanent(f"no task {task_id!r} in tasks.json and no skill of that name")
        return task

    def _jitter(self) -> float:
        return random.uniform(0, self.settings.rate_limit_jitter)

    async def handle(self, delivery: Delivery[RunRequest]) -> RetryLater | Permanent | None:
        request = delivery.message
        started_at, started = datetime.now(UTC), time.monotonic()
        try:
            task = self.task_for(request.task)
        except Permanent as exc:
            await self._emit_failed(request, "failed", str(exc))
            return exc
        refusal = await self.limits.check()
        if refusal is not None and refusal.retry_in is not None:
            return RetryLater(refusal.retry_in + self._jitter(), refusal.message)
        claim = await self.ledger.claim(request.run_id, task.id)
        if claim is None:
            log.info("run already finished; dropping the repeat", extra={"run_id": request.run_id})
            return None
        base = RunRecord(run_id=request.run_id, task=task.id, trigger=request.trigger, outcome="failed",
                         started_at=started_at, deliveries=delivery.attempt)
        if refusal is not None:
            return await self._finish(claim, base, "refused", started, error=refusal.message,
                                      request=request, limit=refusal.limit)
        if claim.entry.claims > self.settings.max_deliver:
            return await self._finish(claim, base, "failed", started, request=request,
                                      error=f"cut short {claim.entry.claims} times (a crash each time?)")
        await self.bus.emit(self.bus.event(
            "run.started", f"{task.id} started", task=task.id, run_id=request.run_id,
            data={"trigger": request.trigger, "step": claim.entry.step, "resumed": claim.resumed,
                  "steps_done": claim.entry.steps_done}))
        timeline = Timeline(self.settings.expanded_state(), request.run_id, self.redact)
        timeline.add("start", task=task.id, trigger=request.trigger, attempt=claim.entry.attempt,
                     resumed=claim.resumed, step=claim.entry.step, requested_by=request.requested_by,
                     delivery=delivery.attempt)
        tools = KodaTools(self.bus, self.layout, task, request.run_id, self.redact,
                          self.settings.worker_tool_timeout, timeline=timeline)
        ticker = asyncio.create_task(self._progress(delivery))
        if task.script:
            work = asyncio.ensure_future(self._script(task, request, claim, tools))
        else:
            pipeline = self._pipeline(task, request, claim, tools, timeline)
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
        if outcome.cost_usd:
            await self.limits.add_spend(outcome.cost_usd)
            self.m_cost.labels(task.id).inc(outcome.cost_usd)
        if outcome.outcome == "rate_limited":
            retry = await self._rate_limited(task, claim, outcome)
            timeline.add("notice", text=f"{retry.reason}; runs again in {retry.delay:.0f}s")
            return retry
        if outcome.outcome == "failed" and claim.entry.attempt <= task.retries.max:
            delay = task.retries.backoff_seconds * 2 ** (claim.entry.attempt - 1)
            timeline.add("notice", text=f"attempt {claim.entry.attempt} of {task.retries.max + 1} "
                                        f"failed: {self.redact(outcome.error or 'failed')}; "
                                        f"next attempt in {delay:.0f}s")
            await self.ledger.update(claim, status="paused", attempt=claim.entry.attempt + 1,
                                     error=outcome.error)
            return RetryLater(delay, outcome.error or "failed")
        record = base.model_copy(update={
            "turns": outcome.turns, "cost_usd": round(outcome.cost_usd, 6),
            "input_tokens": outcome.input_tokens, "output_tokens": outcome.output_tokens,
            "artifacts": sorted(set(tools.artifacts) | _step_artifacts(self.layout, request.run_id,
                                                                         outcome)),
            "steps": outcome.steps, "result": self.redact(outcome.text)[:20_000]})
        finished = await self._finish(claim, record, outcome.outcome, started, error=outcome.error,
                                      request=request)
        timeline.add("end", outcome=outcome.outcome, error=record.error if outcome.error else None,
                     turns=record.turns, cost_usd=record.cost_usd, artifacts=record.artifacts)
        return finished

    def _pipeline(self, task: Task, request: RunRequest, claim: Claim, tools: KodaTools,
                  timeline: Timeline) -> Pipeline:
        def on_step(step: str) -> None:
            tools.step = step
            timeline.step(step, claim.entry.step)

        async def session(prompt: str, spec: SessionSpec, left: float) -> SessionResult:
            options = build_options(self.settings, self.layout, spec, tools.server())
            result = await run_session(prompt, options, timeout=left, on_message=timeline.on_message)
            timeline.session_end(result)
            return result

        return Pipeline(task, request, self.ledger, claim, self.layout.drafts / request.run_id,
                        lambda skill: system_prompt(self.layout, skill), session, on_step)

    async def _script(self, task: Task, request: RunRequest, claim: Claim, tools: KodaTools) -> RunOutcome:
        """A script task runs no model: the actions service runs the script, once per attempt."""
        key = f"run:{request.run_id}:{claim.entry.attempt}"
        action = ActionRequest(name=f"script.{task.script}", idempotency_key=key, run_id=request.run_id,
                               requested_by=f"task:{task.id}")
        reply = await tools.request_reply(f"koda.actions.script.{task.script}", action, ActionResult,
                                          key, timeout=task.timeout_seconds)
        if reply is None:
            return RunOutcome("failed",
                              error=f"no answer from the actions service in {task.timeout_seconds}s")
        if not reply.ok:
            return RunOutcome("failed", text=reply.output,
                              error=reply.error or f"script exited with {reply.exit_code}")
        return RunOutcome("done", text=reply.output)

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
                      request: RunRequest, error: str | None = None,
                      limit: str | None = None) -> RetryLater | Permanent | None:
        """Record a terminal outcome: file, daily log, ledger, metrics, event. Acks the message."""
        record = record.model_copy(update={
            "outcome": outcome, "error": self.redact(error) if error else None,
            "finished_at": datetime.now(UTC), "duration_s": round(time.monotonic() - started, 3)})
        write_record(self.layout, record)
        append_daily_log(self.layout, record)
        status = {"done": "done", "turn_cap": "turn_cap", "cancelled": "cancelled"}.get(outcome, "failed")
        await self.ledger.update(claim, status=status, error=record.error)
        self.m_runs.labels(record.task, outcome).inc()
        self.m_duration.labels(record.task).observe(record.duration_s)
        self.m_turns.labels(record.task).observe(record.turns)
        data: dict[str, Any] = {
            "outcome": outcome, "turns": record.turns, "cost_usd": record.cost_usd,
            "duration_s": record.duration_s, "artifacts": record.artifacts,
            "result": record.result[:RESULT_CHARS], "reply_to": request.reply_to,
            "steps": [s.id for s in record.steps]}
        if error:
            data["error"] = record.error
        if limit:
            data["limit"] = limit
        kind = "run.finished" if outcome == "done" else "run.failed"
        summary = f"{record.task} {outcome}" + (f": {record.error}" if record.error else "")
        await self.bus.emit(self.bus.event(kind, summary[:300], task=record.task, run_id=record.run_id,
                                           severity="info" if outcome == "done" else "warning",
                                           data=data))
        log.info("run finished", extra={"run_id": record.run_id, "outcome": outcome})
        self._prune_transcripts()
        return None

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
        run_id, by = event.run_id, str(event.data.get("requested_by") or event.service)
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
            await self.bus.kv["runs"].create(run_id, entry.to_bytes())
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
            data={"outcome": "cancelled", "error": record.error, "turns": 0, "cost_usd": 0.0,
                  "duration_s": 0.0}))

    async def _emit_failed(self, request: RunRequest, outcome: str, error: str) -> None:
        await self.bus.emit(self.bus.event(
            "run.failed", f"{request.task} {outcome}: {error}"[:300], severity="warning",
            task=request.task, run_id=request.run_id,
            data={"outcome": outcome, "error": error, "reply_to": request.reply_to}))

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
