"""Typed event data (shared/events.py): what a producer builds is what a consumer reads, older
payloads still read, and data that does not fit is a clear error, never a crash or a guess."""

from __future__ import annotations

import pytest

from koda.services.gateway import reports
from koda.shared.events import ApprovalEvent, BadEvent, RunEnded
from koda.shared.messages import Event


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
