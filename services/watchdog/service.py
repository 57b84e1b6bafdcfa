"""Watchdog: detect, diagnose, fix, verify, report; what an on-call engineer would do.

Detection is push where possible: the restart listener's file and supervisord's states are
polled every `watchdog_poll_interval` (cheap: a stat and one local RPC), and heartbeats arrive
through a KV watch. Each failing service gets one incident, which ends in exactly one report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from koda.shared.home import HomeLayout
from koda.shared.kvwatch import KeyWatch
from koda.shared.lastgood import LastGood
from koda.shared.messages import Heartbeat
from koda.shared.service import Service
from koda.shared.settings import SERVICES
from koda.shared.supervision import read_restarts
from koda.shared.tasks import parse_tasks

from . import heal
from .classify import classify
from .evidence import Evidence, restarts_in_window, tail
from .failed_jobs import SUBJECTS as FAILED_JOB_SUBJECTS
from .failed_jobs import FailedJobs
from .incidents import Incident
from .metrics import WatchdogMetrics
from .probes import Probes
from .reports import IncidentReports
from .restarts import RestartCollector
from .selfheal import SelfHealGate
from .supervisor import Supervisor

log = logging.getLogger(__name__)
#: The incident key of a NATS outage, which every service's lapsed heartbeats join.
BUS_INCIDENT = "nats"
DOWN_STATES = {"EXITED", "BACKOFF", "FATAL", "UNKNOWN"}


class WatchdogService(Service):
    name = "watchdog"

    async def setup(self) -> None:
        self.registry.register(RestartCollector(self.settings))
        self.metrics = WatchdogMetrics(self.registry)
        self.supervisor = Supervisor(self.settings)
        self.layout = HomeLayout(self.settings.expanded_home())
        self.beats: dict[str, Heartbeat] = {}  # instance key -> newest heartbeat
        self.incidents: dict[str, Incident] = {}
        self.seen_restarts = {n: int(e.get("restarts", 0))
                              for n, e in read_restarts(self.settings).items()}
        self.probes = Probes(self.settings, self.bus, self.registry)
        self._reconnects = 0
        self._bus_dropped_at: float | None = None
        # tasks.json as the other services run it: the shared last good version when it is broken.
        self.tasks = LastGood(self.layout.tasks, self.settings.expanded_state(), "watchdog",
                              parse_tasks)
        self.self_heal = SelfHealGate(self.settings, self.layout, self.bus.kv["limits"],
                                      self.tasks, self.bus.kv["config"])
        self.reports = IncidentReports(self.bus, self.metrics, self.redact, self.incidents)
        failed_jobs = FailedJobs(self.bus, self.metrics, self.redact, self.self_heal, self.reports)
        # A KeyWatch, not a bare KV watch: it is live again the moment NATS is back.
        beats = KeyWatch(self.bus, "health", ">", self._on_beat)
        await beats.start()
        self.stack.push_async_callback(beats.stop)
        for subject in FAILED_JOB_SUBJECTS:
            sub = await self.bus.nc.subscribe(subject, queue="watchdog", cb=failed_jobs.on_event)
            self.stack.push_async_callback(sub.unsubscribe)

    def _on_beat(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.beats.pop(key, None)
            return
        try:
            self.beats[key] = Heartbeat.from_bytes(value)
        except ValueError:
            log.warning("unreadable heartbeat", extra={"key": key})

    async def run(self) -> None:
        probe_every = 10.0
        next_probe = 0.0
        while not self.stopping.is_set():
            try:
                await self._tick()
                if time.monotonic() >= next_probe:
                    next_probe = time.monotonic() + probe_every
                    await self.probes.run_all()
            except Exception:
                log.exception("watchdog tick failed")
            try:
                await asyncio.wait_for(self.stopping.wait(), self.settings.watchdog_poll_interval)
            except TimeoutError:
                pass

    # --- detection ------------------------------------------------------------------------

    def _fresh_beat(self, service: str, pid: int | None = None,
                    started_after: float | None = None) -> Heartbeat | None:
        """A live heartbeat of `service` (of process `pid`, started after a given time)."""
        now = datetime.now(UTC)
        for beat in self.beats.values():
            if beat.service != service or (pid is not None and beat.pid != pid):
                continue
            if started_after is not None and beat.started_at.timestamp() <= started_after:
                continue
            if (now - beat.at).total_seconds() < self.settings.heartbeat_ttl and beat.status == "ok":
                return beat
        return None

    def _note_bus(self) -> None:
        """Remember when our own NATS connection last dropped (a NATS restart or outage)."""
        nc = self.bus.nc
        reconnects = int(nc.stats.get("reconnects", 0))
        if reconnects != self._reconnects or not nc.is_connected:
            self._reconnects = reconnects
            self._bus_dropped_at = time.time()

    def _bus_outage(self) -> bool:
        """True while heartbeats lapsing can be the bus's doing, not the services'."""
        grace = self.settings.heartbeat_ttl * 2 + 10
        return self._bus_dropped_at is not None and time.time() - self._bus_dropped_at < grace

    async def _tick(self) -> None:
        self._note_bus()
        procs = await self.supervisor.processes() if self.supervisor.available else {}
        restarts = read_restarts(self.settings) if procs else {}
        for service in SERVICES:
            info = procs.get(service)
            entry = restarts.get(service, {})
            count = int(entry.get("restarts", 0))
            restarted = count > self.seen_restarts.get(service, 0)
            self.seen_restarts[service] = count
            incident = self.incidents.get(service)
            if info is not None:
                down = info["statename"] in DOWN_STATES
                if (restarted or down) and incident is None:
                    failed_at = float(entry["recent"][-1]) if restarted and entry.get("recent") \
                        else time.time()
                    incident = self._open(service, failed_at, info)
                if incident is not None:
                    await self._progress(incident, info, entry, restarted)
            elif not procs:
                await self._heartbeat_only(service)

    def _open(self, service: str, failed_at: float, info: dict[str, Any]) -> Incident:
        incident = Incident(key=service, detected_at=time.monotonic(), failed_at=failed_at,
                            detected_wall=time.time(), old_pid=info.get("pid") or None)
        self.incidents[service] = incident
        self.metrics.time_to_detect.observe(incident.time_to_detect)
        log.warning("service failure detected", extra={"target": service,
                                                       "detect_s": round(incident.time_to_detect, 3)})
        return incident

    def _evidence(self, service: str, info: dict[str, Any], entry: dict[str, Any]) -> Evidence:
        return Evidence(
            service=service, state=info["statename"],
            exit_status=info.get("exitstatus"),
            restarts=int(entry.get("restarts", 0)),
            recent_restarts=restarts_in_window(entry, self.settings.crash_loop_window),
            log_tail=tail(self.settings.log_dir() / f"{service}.err.log"),
            detail=info.get("description", ""),
        )

    # --- diagnose, fix, verify ------------------------------------------------------------

    async def _progress(self, incident: Incident, info: dict[str, Any], entry: dict[str, Any],
                        restarted: bool) -> None:
        service = incident.key
        state = info["statename"]
        if incident.outcome is not None:
            if incident.outcome == "escalated" and state == "RUNNING":
                self.incidents.pop(service, None)  # a person started it again
            return
        if incident.evidence is None or restarted or state in DOWN_STATES:
            evidence = self._evidence(service, info, entry)
            failure, reason = classify(evidence, self.settings.crash_loop_restarts)
            if incident.evidence is None or failure != incident.failure:
                incident.evidence, incident.failure, incident.reason = evidence, failure, reason
                await self.reports.step(incident, f"classified {failure}: {reason}")
            if failure in ("config", "crash_loop"):
                await self._escalate(incident)
                return
            if state in DOWN_STATES and await self.supervisor.start(service):
                self.metrics.heal_actions.labels("restart").inc()
                await self.reports.step(incident, "restarted it through supervisord")
            refusal = await self.self_heal.refusal() if failure == "unknown" else None
            if refusal is not None and "self-heal" not in incident.extra:
                incident.extra["self-heal"] = None
                await self.reports.step(incident, f"no self-heal run: {refusal}")
            if failure == "unknown" and "self-heal" not in incident.extra:
                await self.self_heal.took()
                run_id = await heal.queue_self_heal(
                    self.bus, f"{service} failed: {reason}",
                    incident.evidence.as_data(self.redact, lines=50))
                incident.extra["self-heal"] = run_id
                self.metrics.heal_actions.labels("self_heal_run").inc()
                await self.reports.step(incident, f"queued the self-heal skill as run {run_id}")
        pid = info.get("pid") or None
        if incident.healthy_at is None:
            # Healthy means a process started after the failure is heartbeating; supervisord
            # may already have respawned it when we first look, so pids alone cannot tell.
            if state == "RUNNING" and self._fresh_beat(service, pid, incident.failed_at):
                incident.healthy_at = time.time()
                incident.verify_at = time.monotonic() + self.settings.watchdog_verify_delay
                incident.extra["healthy_pid"] = pid
                if not any("restarted" in a for a in incident.actions):
                    incident.act("supervisord restarted it")
        elif incident.verify_at is not None and time.monotonic() >= incident.verify_at:
            holds = state == "RUNNING" and pid == incident.extra.get("healthy_pid") \
                and self._fresh_beat(service, pid) is not None
            incident.outcome = "healed" if holds else "failed"
            if incident.time_to_healthy is not None and holds:
                self.metrics.time_to_healthy.observe(incident.time_to_healthy)
            await self.reports.report(incident, holds)

    async def _escalate(self, incident: Incident) -> None:
        service = incident.key
        if await self.supervisor.stop(service):
            self.metrics.heal_actions.labels("stop").inc()
        incident.act("stopped it: restarting would loop")
        held: list[str] = []
        if incident.failure == "crash_loop":
            held = await heal.hold_tasks(
                self.bus, heal.dependent_tasks(
                    service, await self.tasks.current(self.bus.kv["config"]), self.layout),
                f"{service} is in a crash loop")
            if held:
                self.metrics.heal_actions.labels("hold_tasks").inc()
                incident.act(f"held dependent tasks: {', '.join(held)}")
        incident.outcome = "escalated"
        await self.reports.report(incident, holds=False)

    async def _heartbeat_only(self, service: str) -> None:
        """Without supervisord (compose): a service whose heartbeats stopped is reported once."""
        seen = any(b.service == service for b in self.beats.values())
        if not seen or self._fresh_beat(service) is not None:
            if service in self.incidents and self._fresh_beat(service) is not None:
                incident = self.incidents.pop(service)
                if incident.key == BUS_INCIDENT:  # one report when the last service is back
                    incident.act(f"{service}: heartbeats are back")
                    if any(i is incident for k, i in self.incidents.items() if k != BUS_INCIDENT):
                        return
                    self.incidents.pop(BUS_INCIDENT, None)
                    incident.outcome, incident.healthy_at = "healed", time.time()
                    await self.reports.report(incident, holds=True)
                    return
                incident.outcome, incident.healthy_at = "healed", time.time()
                incident.act("heartbeats are back (restarted by its container policy)")
                await self.reports.report(incident, holds=True)
            return
        if service not in self.incidents and self._bus_outage():
            # Every service's heartbeats lapse when NATS restarts: one incident, not one each.
            bus = self.incidents.get(BUS_INCIDENT)
            if bus is None:
                bus = Incident(key=BUS_INCIDENT, detected_at=time.monotonic(),
                               failed_at=self._bus_dropped_at or time.time(),
                               detected_wall=time.time(), failure="transient",
                               reason="the NATS connection dropped (a NATS restart or outage)")
                bus.extra["services"] = []
                self.incidents[BUS_INCIDENT] = bus
            bus.extra["services"].append(service)
            bus.act(f"{service}: no heartbeat while NATS was away")
            self.incidents[service] = bus
            return
        if service not in self.incidents:
            incident = Incident(key=service, detected_at=time.monotonic(), failed_at=time.time(),
                                detected_wall=time.time(), failure="unknown",
                                reason="no heartbeat within the TTL")
            self.incidents[service] = incident
            incident.act("no supervisord here: waiting for the container restart policy")


SERVICE = WatchdogService
