"""Actions: runs helper scripts and approved actions with their credentials, once per key.

Consumes ACTIONS (`koda.actions.script.<script>` and `koda.actions.<kind>`). For each request:
a key already done returns its recorded result and runs nothing; otherwise the script is found in
the manifest, approval is checked where needed, the key is claimed, the script runs with only its
declared secrets, and a script that reports an auth failure (exit 77 or a known error) gets its
site's cookies refreshed by the scraper and one retry. The result, redacted of every `.env`
value, is recorded under the key, sent to `reply_subject` and announced as `action.done`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Delivery
from koda.shared.errors import ConfigError, NoReply, RetryLater
from koda.shared.events import ActionDone
from koda.shared.home import HomeLayout
from koda.shared.messages import ActionRecord, ActionRequest, ActionResult, ScrapeRequest, ScrapeResult
from koda.shared.scripts import ScriptSpec
from koda.shared.secrets import Redactor, read_env_file, redactor_for_home
from koda.shared.service import Service

from .manifest import Refused, check_approval, load_manifest, needs_approval, script_for
from .results import Claim, ResultStore
from .runner import MissingSecret, ScriptRun, run_script, script_environment, script_home

log = logging.getLogger(__name__)
CONCURRENCY = 4
ERROR_CHARS = 2000  # of stderr kept in a failed result's `error`


@dataclass(frozen=True)
class Executed:
    """How a script run ended: the result to record, the metric outcome, and what the auth
    retry did (`needs_human`: the scraper flagged the site, so nobody should refresh again)."""

    result: ActionResult
    outcome: str
    auth_retry: bool = False
    needs_human: bool = False


class ActionsService(Service):
    name = "actions"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layout = HomeLayout(self.settings.expanded_home())
        self.actions_total = Counter("koda_actions_total", "Action requests handled",
                                     ["action", "outcome"], registry=self.registry)
        self._running: set[str] = set()  # idempotency keys this process is running now

    async def setup(self) -> None:
        self.results = ResultStore(self.bus.kv["actions"], self.instance)
        self.approvals = ApprovalStore(self.bus)

    async def run(self) -> None:
        await self.bus.consume("ACTIONS", ActionRequest, self.handle, stop=self.stopping,
                               in_flight=self.in_flight, concurrency=CONCURRENCY)

    # --- one request ------------------------------------------------------------------------

    async def handle(self, delivery: Delivery[ActionRequest]) -> RetryLater | None:
        request = delivery.message
        found = await self.results.get(request.idempotency_key)
        if found is not None and found[0].status == "done":
            await self._duplicate(request, found[0])
            return None
        redact = redactor_for_home(self.layout.root)
        try:
            spec = script_for(load_manifest(self.layout), request, self.layout)
            if needs_approval(spec, request):
                await check_approval(self.approvals, request)
        except ConfigError as exc:
            await self._refuse(request, Refused(f"scripts manifest is invalid: {exc}", "config_error"))
            return None
        except Refused as refused:
            await self._refuse(request, refused)
            return None
        claim = await self.results.claim(request.idempotency_key, request.name)
        if claim.state == "done":
            await self._duplicate(request, claim.record)
            return None
        if claim.state == "held":
            return await self._held(delivery, claim)
        self._running.add(request.idempotency_key)
        try:
            done = await self._execute(spec, request, delivery, redact)
        except asyncio.CancelledError:
            # Shutdown cut the script short (it is killed): record that, and never re-run it.
            cut = self._interrupted(request, "the actions service stopped while it ran")
            await asyncio.shield(self.results.finish(claim, cut))
            self._count(request, "interrupted")
            raise
        except Exception as exc:  # e.g. the program does not exist: record it, do not retry
            log.warning("action error", extra={"action": request.name}, exc_info=True)
            error = redact(f"could not run {spec.command[0]!r}: {type(exc).__name__}: {exc}")
            done = Executed(self._result(request, ok=False, error=error), "error")
        finally:
            self._running.discard(request.idempotency_key)
        await self.results.finish(claim, done.result)
        await self._announce(request, done.result, done.outcome, site=spec.site,
                             auth_retry=done.auth_retry, needs_human=done.needs_human)
        return None

    async def _execute(self, spec: ScriptSpec, request: ActionRequest, delivery: Delivery[Any],
                       redact: Redactor) -> Executed:
        """Run the script, and once more after a cookie refresh if its login was rejected."""
        env_file = read_env_file(self.layout.env)
        extra = {"KODA_ACTION": request.name, "KODA_IDEMPOTENCY_KEY": request.idempotency_key}
        if request.run_id:
            extra["KODA_RUN_ID"] = request.run_id
        try:
            env = script_environment(spec, self.layout, env_file, extra,
                                     script_home(self.settings.expanded_state(), spec))
        except MissingSecret as exc:
            return Executed(self._result(request, ok=False, error=str(exc), cause="missing_secret"),
                            "missing_secret")
        run = await run_script(spec, self.layout, env, request.args, progress=delivery.progress)
        auth_retry = False
        if run.auth_failed(spec.auth_errors):
            if not spec.site:
                why = "auth failure; the script names no site whose cookies could be refreshed"
                return Executed(self._from_run(request, run, redact, why), "auth_failed")
            refreshed = await self._refresh(spec.site, request, delivery)
            if not refreshed.ok:
                why = f"auth failure; refreshing {spec.site}'s login failed: {refreshed.error}"
                return Executed(self._from_run(request, run, redact, why), "auth_failed",
                                needs_human=refreshed.needs_human)
            auth_retry = True
            run = await run_script(spec, self.layout, env, request.args, progress=delivery.progress)
            if run.auth_failed(spec.auth_errors):
                why = f"auth failure again after refreshing {spec.site}'s login"
                return Executed(self._from_run(request, run, redact, why), "auth_failed", True)
        outcome = "ok" if run.ok else "timeout" if run.timed_out else "failed"
        return Executed(self._from_run(request, run, redact), outcome, auth_retry)

    async def _refresh(self, site: str, request: ActionRequest, delivery: Delivery[Any]) -> ScrapeResult:
        """Ask the scraper to log in to `site` again and wait for its answer."""
        job_id = f"refresh-{uuid.uuid4().hex[:12]}"
        log.info("auth failure: refreshing cookies",
                 extra={"action": request.name, "site": site, "job_id": job_id})
        try:
            return await self.bus.request(
                f"koda.scrape.{site}", ScrapeRequest(site=site, job_id=job_id, refresh=True),
                ScrapeResult, timeout=self.settings.action_refresh_timeout,
                keep_alive=delivery.progress)
        except NoReply as exc:
            return ScrapeResult(site=site, job_id=job_id, ok=False, error=str(exc))

    # --- the other paths --------------------------------------------------------------------

    async def _duplicate(self, request: ActionRequest, record: ActionRecord) -> None:
        assert record.result is not None
        result = record.result.model_copy(update={"duplicate": True})
        self._count(request, "duplicate")
        await self._reply(request, result)
        log.info("repeat of a done key: nothing run",
                 extra={"action": request.name, "idempotency_key": request.idempotency_key})

    async def _held(self, delivery: Delivery[ActionRequest], claim: Claim) -> RetryLater | None:
        """Another delivery holds the key: wait for it, or record it interrupted if it is gone."""
        request = delivery.message
        if await self._holder_alive(claim.record):
            return RetryLater(min(60.0, 2.0 * delivery.attempt), "the same key is running")
        cut = self._interrupted(request, f"instance {claim.record.instance} stopped while it ran")
        if await self.results.take_over(claim, cut) is None:
            return RetryLater(1.0, "the key's record changed meanwhile")
        await self._announce(request, cut, "interrupted")
        return None

    async def _holder_alive(self, record: ActionRecord) -> bool:
        if record.instance == self.instance:
            return record.idempotency_key in self._running
        try:
            entry = await self.bus.kv["health"].get(f"{self.name}.{record.instance}")
        except Exception:
            return False
        return bool(entry.value)

    async def _refuse(self, request: ActionRequest, refused: Refused) -> None:
        log.warning("action refused", extra={"action": request.name, "reason": refused.reason})
        # The worker fails a script task at once for these: no retry makes them work.
        cause = {"unknown": "no_handler", "config_error": "config"}.get(refused.outcome, refused.outcome)
        await self._announce(request, self._result(request, ok=False, error=refused.reason,
                                                   cause=cause), refused.outcome)

    # --- results ----------------------------------------------------------------------------

    def _result(self, request: ActionRequest, **fields: Any) -> ActionResult:
        return ActionResult(name=request.name, idempotency_key=request.idempotency_key, **fields)

    def _interrupted(self, request: ActionRequest, why: str) -> ActionResult:
        return self._result(request, ok=False, error=(
            f"interrupted: {why}. It may or may not have taken effect; it is not re-run under "
            "this key. Check, then request it again with a new key if needed."))

    def _from_run(self, request: ActionRequest, run: ScriptRun, redact: Redactor,
                  why: str | None = None) -> ActionResult:
        error = why
        if error is None and not run.ok:
            error = (f"timed out after {run.duration_s:.0f}s" if run.timed_out
                     else f"exit code {run.exit_code}")
        if error is not None and run.stderr.strip():
            error += ": " + run.stderr.strip()[-ERROR_CHARS:]
        return self._result(request, ok=run.ok and why is None, exit_code=run.exit_code,
                            output=redact(run.stdout), error=redact(error) if error else None)

    async def _announce(self, request: ActionRequest, result: ActionResult, outcome: str, *,
                        site: str | None = None, auth_retry: bool = False,
                        needs_human: bool = False) -> None:
        self._count(request, outcome)
        await self._reply(request, result)
        await self.bus.emit(self.bus.event(
            "action.done", f"{request.name}: {outcome}",
            severity="info" if result.ok else "warning", run_id=request.run_id,
            data=ActionDone(name=request.name, idempotency_key=request.idempotency_key,
                            ok=result.ok, outcome=outcome, exit_code=result.exit_code,
                            approval_id=request.approval_id, site=site, auth_retry=auth_retry,
                            needs_human=needs_human, error=(result.error or "")[:300] or None)))

    async def _reply(self, request: ActionRequest, result: ActionResult) -> None:
        if request.reply_subject:
            try:
                await self.bus.nc.publish(request.reply_subject, result.to_bytes())
            except Exception:
                log.warning("could not reply", extra={"action": request.name}, exc_info=True)

    def _count(self, request: ActionRequest, outcome: str) -> None:
        self.actions_total.labels(request.name, outcome).inc()


SERVICE = ActionsService
