"""How an incident is told: a `heal.step` event per step taken, and exactly one report at its
end (an `alert` when a person must act, else `incident.resolved`)."""

from __future__ import annotations

import logging
from typing import Any

from koda.shared.bus import Bus
from koda.shared.events import AlertEvent, HealStep, IncidentResolved
from koda.shared.secrets import Redactor

from .incidents import Incident
from .metrics import WatchdogMetrics

log = logging.getLogger(__name__)


class IncidentReports:
    """Emits the steps and the one report of the incidents in `open_incidents`."""

    def __init__(self, bus: Bus, metrics: WatchdogMetrics, redact: Redactor,
                 open_incidents: dict[str, Incident]) -> None:
        self.bus, self.metrics, self.redact = bus, metrics, redact
        self.open = open_incidents

    async def step(self, incident: Incident, action: str) -> None:
        incident.act(action)
        await self.bus.emit(self.bus.event("heal.step", f"{incident.key}: {action}",
                                           data=HealStep(incident=incident.key, step=action)))

    async def report(self, incident: Incident, holds: bool) -> None:
        """The one report of an incident: an alert if a person must act, else a resolution."""
        self.metrics.incidents.labels(incident.failure, incident.outcome or "unknown").inc()
        what = {"healed": "healed", "failed": "did not hold", "escalated": "needs a person",
                "recorded": "recorded"}.get(incident.outcome or "", incident.outcome or "")
        summary = f"{incident.key}: {incident.failure} ({incident.reason}); {what}"
        data: dict[str, Any] = {
            "incident": incident.key, "failure": incident.failure, "reason": incident.reason,
            "outcome": incident.outcome, "holds": holds, "actions": incident.actions,
            "evidence": incident.evidence.as_data(self.redact) if incident.evidence else {},
            "time_to_detect_s": round(incident.time_to_detect, 3),
            "time_to_healthy_s": None if incident.time_to_healthy is None
            else round(incident.time_to_healthy, 3),
            **incident.extra,
        }
        if incident.outcome in ("escalated", "failed"):
            event = self.bus.event("alert", summary, severity="critical", data=AlertEvent(
                kind=f"incident.{incident.failure}", **data))
        else:
            event = self.bus.event("incident.resolved", summary, severity="warning",
                                   data=IncidentResolved(**data))
        await self.bus.emit(event)
        log.warning("incident reported", extra={"summary": summary})
        # A finished incident frees the service for the next one; an escalated one stays
        # until a person starts the service again.
        if incident.outcome != "escalated":
            self.open.pop(incident.key, None)
