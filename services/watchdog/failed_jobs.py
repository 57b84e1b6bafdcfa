"""Failed runs, actions and scrapes (`run.failed`, `action.done` / `scrape.done` not ok): what the
watchdog does about each, by class. An expired login gets a cookie refresh; a failure no rule
classifies may get a self-heal run (see selfheal.py); a limit that did its job is recorded; the
rest (a secret, a handler, the config, the disk, the API) need a person: one alert per cause an
hour, however many runs fail for it."""

from __future__ import annotations

import logging
import time

from nats.aio.msg import Msg

from koda.shared.bus import Bus
from koda.shared.events import ActionDone, BadEvent, JobDone, RunEnded, ScrapeDone
from koda.shared.messages import Event
from koda.shared.secrets import Redactor

from . import heal
from .classify import CAUSE_CLASSES, classify_text
from .evidence import Evidence
from .incidents import Incident
from .metrics import WatchdogMetrics
from .reports import IncidentReports
from .selfheal import SelfHealGate

log = logging.getLogger(__name__)

#: The events that can carry a failed job.
SUBJECTS = ("koda.events.run.failed", "koda.events.action.done", "koda.events.scrape.done")


class FailedJobs:
    """Answers each failed job once, as an incident keyed by its task or site."""

    def __init__(self, bus: Bus, metrics: WatchdogMetrics, redact: Redactor,
                 self_heal: SelfHealGate, reports: IncidentReports) -> None:
        self.bus, self.metrics, self.redact = bus, metrics, redact
        self.self_heal, self.reports = self_heal, reports

    async def on_event(self, msg: Msg) -> None:
        try:
            event = Event.from_bytes(msg.data)
        except ValueError:
            return
        try:
            ended: JobDone | RunEnded = (
                ActionDone.of(event) if event.event == "action.done"
                else ScrapeDone.of(event) if event.event == "scrape.done" else RunEnded.of(event))
        except BadEvent as exc:
            log.warning("not acting on an event: %s", exc)
            return
        if isinstance(ended, JobDone) and (ended.ok or ended.needs_human):
            return  # done, or the scraper already tried its refresh and escalated
        if event.task == heal.SELF_HEAL_TASK:
            return  # never answer a failed self-heal run with another one
        error = ended.error or event.summary
        action = ended if isinstance(ended, ActionDone) else None
        failure, reason = classify_text(error, action.exit_code if action else None)
        if isinstance(ended, RunEnded) and ended.cause in CAUSE_CLASSES:  # named: no guessing
            failure, reason = CAUSE_CLASSES[ended.cause], ended.resource or ended.cause
        elif isinstance(ended, RunEnded) and ended.outcome in ("turn_cap", "refused"):
            failure, reason = "limit", ended.outcome  # a limit did its job
        site = ended.site if isinstance(ended, JobDone) else None
        key = f"site:{site}" if site else f"task:{event.task or (action.name if action else '?')}"
        incidents = self.reports.open
        if key in incidents:
            return
        incident = Incident(key=key, detected_at=time.monotonic(), failed_at=event.at.timestamp(),
                            detected_wall=time.time(), failure=failure, reason=reason)
        incident.evidence = Evidence(service=event.service, state="failed", exit_status=None,
                                     restarts=0, recent_restarts=0, log_tail=[error])
        incidents[key] = incident
        try:
            await self._heal(incident, site)
        finally:
            incidents.pop(key, None)

    async def _heal(self, incident: Incident, site: str | None) -> None:
        if incident.failure == "auth" and site:
            await self.reports.step(incident, f"refreshing cookies for {site} through the scraper")
            self.metrics.heal_actions.labels("refresh_cookies").inc()
            result = await heal.refresh_cookies(self.bus, site)
            incident.act(f"cookie refresh for {site}: {'ok' if result.ok else result.error}")
            incident.outcome = "healed" if result.ok else "escalated"
            incident.healthy_at = time.time() if result.ok else None
            await self.reports.report(incident, holds=result.ok)
        elif incident.failure == "unknown":
            refusal = await self.self_heal.refusal()
            if refusal is not None:
                await self.reports.step(incident, f"no self-heal run: {refusal}")
                incident.outcome = "recorded"
                self.metrics.incidents.labels(incident.failure, "recorded").inc()
                return
            await self.self_heal.took()
            run_id = await heal.queue_self_heal(
                self.bus, f"{incident.key} failed: {incident.reason}",
                incident.evidence.as_data(self.redact) if incident.evidence else {})
            incident.act(f"queued the self-heal skill as run {run_id}")
            self.metrics.heal_actions.labels("self_heal_run").inc()
            incident.outcome = "recorded"
            await self.reports.report(incident, holds=False)
        elif incident.failure == "limit":
            incident.outcome = "recorded"  # a turn cap or spend cap did its job
            self.metrics.incidents.labels(incident.failure, "recorded").inc()
        else:
            # A person must act (a secret, a handler, the config, a login, the disk, the API
            # unreachable): one alert per cause an hour, however many runs fail for it.
            incident.outcome = "escalated"
            if await self.self_heal.alert_due(f"{incident.failure}:{incident.reason}"):
                await self.reports.report(incident, holds=False)
            else:
                self.metrics.incidents.labels(incident.failure, "coalesced").inc()
