"""Typed event data (shared/events.py): what a producer builds is what a consumer reads, older
payloads still read, and data that does not fit is a clear error, never a crash or a guess."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from koda.services.gateway import reports
from koda.services.scheduler.catchup import CatchUpPlan
from koda.shared.events import (
    AdmissionEvent,
    AlertEvent,
    ApprovalEvent,
    AwaitingApproval,
    BadEvent,
    CatchUpDone,
    ConfigDetail,
    ConfigInvalid,
    EventData,
    HealStep,
    IncidentResolved,
    NeedsHuman,
    RunEnded,
    TaskPaused,
    TaskResumed,
    TaskToggled,
)
from koda.shared.messages import Event

NOON = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def plain(text: str) -> str:
    return text


def test_a_producers_model_is_what_the_consumer_reads_over_the_wire() -> None:
    sent = RunEnded(outcome="turn_cap", turns=25, cost_usd=0.5, duration_s=3.0, error="cap",
                    attempt=1, attempts=3, reply_to="discord:42")
    event = Event(event="run.failed", service="worker", run_id="t.1", data=sent.dump())
    wire = Event.from_bytes(event.to_bytes())
    assert RunEnded.of(wire) == sent
    assert "limit" not in wire.data and wire.data["outcome"] == "turn_cap"  # None stays off the wire


def test_an_older_payload_reads_with_defaults_and_the_kind_gives_the_outcome() -> None:
    old = Event(event="run.failed", service="worker", run_id="t.1", data={"error": "boom", "x": 1})
    ended = RunEnded.of(old)
    assert ended.outcome == "failed" and ended.error == "boom" and not ended.done
    assert "🛑 **?** `t.1`: failed" in reports.run_report(old, plain)


def test_data_that_does_not_fit_names_the_event_run_and_field() -> None:
    bad = Event(event="run.finished", service="worker", run_id="t.2", data={"turns": "many"})
    with pytest.raises(BadEvent, match=r"run.finished event from worker for t.2: data.turns"):
        RunEnded.of(bad)
    with pytest.raises(BadEvent, match="approval_id"):
        ApprovalEvent.of(Event(event="approval.decided", service="gateway", data={}))
    with pytest.raises(BadEvent, match="not one of"):
        RunEnded.of(Event(event="alert", service="worker"))


def test_the_digest_skips_an_unreadable_run_end_and_counts_the_rest() -> None:
    events = [Event(event="run.finished", service="worker", task="a", data={"cost_usd": 0.25}),
              Event(event="run.failed", service="worker", task="b", data={"turns": "many"})]
    text = reports.digest_text(events, [], plain, "2026-12-02")
    assert "$0.25" in text and "`b`" not in text


def over_the_wire(kind: str, data: EventData) -> Event:
    return Event.from_bytes(Event(event=kind, service="test", data=data.dump()).to_bytes())


#: What each producer sends, built as it builds it, and the keys its event had as a plain dict
#: (docs/contracts.md), so older readers and the docs stay true.
SENT: list[tuple[str, EventData, dict[str, Any]]] = [
    ("alert", AlertEvent(kind="discord", problem="login"), {"kind": "discord", "problem": "login"}),
    ("alert", AlertEvent(source="worker", kind="sandbox_unavailable"),
     {"source": "worker", "kind": "sandbox_unavailable"}),
    ("alert", AlertEvent(kind="rate_limit", pause_until=NOON, reason="429"),
     {"kind": "rate_limit", "pause_until": NOON.isoformat(), "reason": "429"}),
    ("alert", AlertEvent(kind="resource.disk_full", cause="disk_full", error="ENOSPC", home="/h"),
     {"kind": "resource.disk_full", "cause": "disk_full", "error": "ENOSPC", "home": "/h"}),
    ("alert", AlertEvent(kind="spend_forecast", forecast_usd=60.0, limit_usd=50.0, spent_usd=20.0,
                         costliest={"big": 40.0}, at=1.5),
     {"kind": "spend_forecast", "forecast_usd": 60.0, "limit_usd": 50.0, "spent_usd": 20.0,
      "costliest": {"big": 40.0}, "at": 1.5}),
    ("alert", AlertEvent(kind="incident.crash_loop", incident="worker.1", failure="crash_loop",
                         reason="exit 1", outcome="escalated", holds=False, actions=["restart"],
                         evidence={"log": "x"}, time_to_detect_s=2.0,
                         **{"self-heal": None, "services": ["worker"]}),
     {"kind": "incident.crash_loop", "incident": "worker.1", "class": "crash_loop",
      "reason": "exit 1", "outcome": "escalated", "holds": False, "actions": ["restart"],
      "evidence": {"log": "x"}, "time_to_detect_s": 2.0, "self-heal": None,
      "services": ["worker"]}),
    ("incident.resolved", IncidentResolved(incident="nats.1", failure="transient", holds=True,
                                           **{"services": ["actions", "watchdog"]}),
     {"incident": "nats.1", "class": "transient", "holds": True, "services": ["actions", "watchdog"]}),
    ("heal.step", HealStep(incident="worker.1", step="restart"),
     {"incident": "worker.1", "step": "restart"}),
    ("task.enabled", TaskToggled(by="console"), {"by": "console"}),
    ("task.paused", TaskPaused(paused_by="scheduler", reason="3 failures", failures=3),
     {"paused_by": "scheduler", "reason": "3 failures", "failures": 3}),
    ("task.resumed", TaskResumed(resumed_by="cli"), {"resumed_by": "cli"}),
    ("scheduler.catch_up", CatchUpPlan(task="t", policy="latest", missed=3, run=[NOON],
                                       since=NOON.replace(hour=9), until=NOON.replace(minute=30),
                                       last_missed=NOON).event_data(["fired"], 0),
     {"policy": "latest", "missed": 3, "run": [NOON.isoformat()], "dropped": 2,
      "since": NOON.replace(hour=9).isoformat(), "until": NOON.replace(minute=30).isoformat(),
      "decisions": ["fired"], "already_fired": 0}),
    ("config.invalid", ConfigInvalid(file="/h/tasks.json", problems=["tasks.json:3: cron: bad"],
                                     details=[ConfigDetail(file="/h/tasks.json", line=3,
                                                           field="cron", message="bad")]),
     {"file": "/h/tasks.json", "problems": ["tasks.json:3: cron: bad"],
      "details": [{"file": "/h/tasks.json", "line": 3, "field": "cron", "message": "bad"}]}),
    ("run.awaiting_approval", AwaitingApproval(approval_id="a1", action="send", tool="mcp__x",
                                               session_id="s", expires_at=NOON),
     {"approval_id": "a1", "action": "send", "tool": "mcp__x", "session_id": "s",
      "expires_at": NOON.isoformat()}),
    ("scrape.needs_human", NeedsHuman(site="bank", reason="login", job_id="j",
                                      clear_with="koda site clear bank"),
     {"site": "bank", "reason": "login", "job_id": "j", "clear_with": "koda site clear bank"}),
    ("run.admission", AdmissionEvent(priority="normal", trigger="cron", decision="wait",
                                     reason="quota", wait_until=NOON),
     {"priority": "normal", "trigger": "cron", "decision": "wait", "reason": "quota",
      "wait_until": NOON.isoformat()}),
]


@pytest.mark.parametrize(("kind", "sent", "wire"), SENT, ids=[f"{k}-{i}" for i, (k, _, _) in
                                                             enumerate(SENT)])
def test_each_producers_payload_keeps_its_wire_keys_and_reads_back(
        kind: str, sent: EventData, wire: dict[str, Any]) -> None:
    event = over_the_wire(kind, sent)
    assert event.data == wire
    assert type(sent).of(event) == sent
    # a reader of the plain dict (an older service) gets the same model
    assert type(sent).of(Event(event=kind, service="old", data=wire)) == sent


@pytest.mark.parametrize(("model", "kind", "data", "field"), [
    (AlertEvent, "alert", {"source": "worker"}, "data.kind"),
    (AlertEvent, "alert", {"kind": "rate_limit", "pause_until": "soon"}, "data.pause_until"),
    (TaskPaused, "task.paused", {"paused_by": "x", "failures": "many"}, "data.failures"),
    (TaskToggled, "task.disabled", {}, "data.by"),
    (CatchUpDone, "scheduler.catch_up", {"policy": "all", "missed": 1, "since": "x",
                                         "until": NOON.isoformat()}, "data.since"),
    (ConfigInvalid, "config.invalid", {"file": "f", "details": [{"file": "f", "line": "three",
                                                                  "message": "m"}]},
     "data.details.0.line"),
    (AwaitingApproval, "run.awaiting_approval", {"action": "send"}, "data.approval_id"),
    (HealStep, "heal.step", {"incident": "i"}, "data.step"),
])
def test_a_payload_that_does_not_fit_names_its_field(
        model: type[EventData], kind: str, data: dict[str, Any], field: str) -> None:
    with pytest.raises(BadEvent, match=rf"{kind} event from svc: .*{field}"):
        model.of(Event(event=kind, service="svc", data=data))


def test_the_alerts_channel_names_an_alerts_kind_and_still_shows_one_that_does_not_fit() -> None:
    alert = Event(event="alert", service="worker", severity="warning", task="t",
                  summary="Rate limit hit", data=AlertEvent(kind="rate_limit").dump())
    assert "**alert** (rate_limit) task `t`\nRate limit hit" in reports.alert_text(alert, plain)
    odd = Event(event="alert", service="newer", summary="something", data={"kind": 7})
    assert "**alert** (alert)\nsomething" in reports.alert_text(odd, plain)
    resolved = Event(event="incident.resolved", service="watchdog", summary="healed")
    assert "**incident.resolved** (incident.resolved)" in reports.alert_text(resolved, plain)
