"""`ApprovalStore` on a real NATS server: decided once, dispatched once, reminded once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from koda.shared import approval_keys
from koda.shared.approvals import ApprovalStore, new_proposal, signed_fields
from koda.shared.bus import Bus
from koda.shared.messages import content_key

from .conftest import SECRET
from .helpers import actions_published, all_events


async def test_propose_is_idempotent_and_redacts_what_the_agent_wrote(bus: Bus, home: object) -> None:
    store = ApprovalStore(bus)
    record = new_proposal("publish-video", "publish-video.m1", "video.publish",
                          args={"note": f"key {SECRET}"}, reason=f"uses {SECRET}")
    first = await store.propose(record)
    again = await store.propose(record)
    assert first.id == again.id == f"publish-video.m1.{content_key('video.publish', record.args)}"
    assert SECRET not in first.model_dump_json() and "[redacted]" in first.reason
    assert first.args["note"] == "key [redacted]"
    requested = [e for e in await all_events(bus) if e.event == "approval.requested"]
    assert len(requested) == 1 and SECRET not in requested[0].model_dump_json()


async def test_a_decision_is_taken_once_and_a_late_one_expires(bus: Bus, home: object) -> None:
    store = ApprovalStore(bus)
    record = await store.propose(new_proposal("publish-video", "r.m1", "video.publish"))
    assert (await store.decide(record.id, False, "111")).changed
    repeat = await store.decide(record.id, True, "111")
    assert not repeat.changed and repeat.reason == "already rejected"
    assert await actions_published(bus, "video.publish") == []

    old = await store.propose(new_proposal("publish-video", "r.m2", "video.publish",
                                           timeout_minutes=1,
                                           now=datetime.now(UTC) - timedelta(minutes=5)))
    late = await store.decide(old.id, True, "111")
    assert not late.changed and late.reason == "expired"
    assert late.record is not None and late.record.status == "expired"
    assert await actions_published(bus, "video.publish") == []


async def test_an_approval_cut_short_before_its_publish_is_dispatched_once(
        bus: Bus, home: object) -> None:
    store = ApprovalStore(bus)
    record = await store.propose(new_proposal("publish-video", "r.m3", "video.publish"))
    entry = await store.kv.get(record.id)
    # As if the gateway died between recording "approved" and publishing the action.
    approved = record.model_copy(update={"status": "approved", "decided_by": "111",
                                         "decided_at": datetime.now(UTC)})
    assert bus.settings.approval_signing_key is not None
    approved.signature = approval_keys.sign(signed_fields(approved),
                                            bus.settings.approval_signing_key.get_secret_value())
    await store.kv.update(record.id, approved.to_bytes(), last=entry.revision)
    assert await store.dispatch_pending() == 1
    assert await store.dispatch_pending() == 0
    # Even a second publish with the same key is dropped by JetStream's duplicate window.
    await store._dispatch(approved)
    published = await actions_published(bus, "video.publish")
    assert len(published) == 1 and published[0].idempotency_key == f"approval:{record.id}"


async def test_sweep_reminds_once_before_expiry(bus: Bus, home: object) -> None:
    store = ApprovalStore(bus)
    now = datetime.now(UTC)
    record = await store.propose(new_proposal("publish-video", "r.m4", "video.publish",
                                              timeout_minutes=60, now=now - timedelta(minutes=50)))
    reminded, expired = await store.sweep(now)
    assert [r.id for r in reminded] == [record.id] and expired == []
    assert await store.sweep(now + timedelta(minutes=1)) == ([], [])
    reminded, expired = await store.sweep(now + timedelta(minutes=11))
    assert reminded == [] and [r.status for r in expired] == ["expired"]
    kinds = [e.event for e in await all_events(bus)]
    assert kinds.count("approval.reminder") == 1 and kinds.count("approval.decided") == 1


async def test_a_decision_racing_a_note_or_a_reminder_still_counts(bus: Bus, home: object) -> None:
    store = ApprovalStore(bus)
    for i in range(15):
        record = await store.propose(new_proposal("publish-video", f"r.race{i}", "video.publish"))
        # The note starts first, so it usually writes between the decision's read and write.
        noted, decision = await asyncio.gather(store.note_message(record.id, 1, 1000 + i),
                                               store.decide(record.id, True, "111"))
        assert decision.changed, decision.reason
        final = (await store.get(record.id))[0]  # type: ignore[index]
        assert final.status == "approved" and final.dispatched
        assert noted == (final.discord_message_id == 1000 + i)
    assert len(await actions_published(bus, "video.publish")) == 15


async def test_a_decision_whose_wake_up_was_cut_short_wakes_the_run_on_the_next_sweep(
        bus: Bus, home: object) -> None:
    """The gateway died between storing a decision on a paused call and queueing the run:
    `dispatch_pending` (gateway start, every sweep) queues it, once, and dispatches nothing."""
    from koda.shared.messages import ApprovalRecord, RunRequest

    store = ApprovalStore(bus)
    record = await store.propose(ApprovalRecord(
        id="publish.m2.abcdef012345", task="publish", run_id="publish.m2",
        action="mcp__youtube__upload", args={"title": "hello"}, tool="mcp__youtube__upload",
        tool_input={"title": "hello"}, tool_use_id="toolu_02",
        session_id="00000000-0000-4000-8000-000000000002",
        expires_at=datetime.now(UTC) + timedelta(hours=1)))
    got = await store.get(record.id)
    assert got is not None
    # The first half of `decide` alone: the decision is stored (signed), then the process dies
    # before the wake-up is sent.
    await store._transition(got[0], got[1], "approved", "4242", datetime.now(UTC))
    assert not (await store.get(record.id))[0].woken  # type: ignore[index]
    assert await store.dispatch_pending() == 0  # not an action: nothing to ACTIONS
    assert await store.dispatch_pending() == 0  # and a second sweep queues nothing more
    info = await bus.js.stream_info("RUNS")
    assert info.state.messages == 1
    msg = await bus.js.get_msg("RUNS", info.state.last_seq)
    woke = RunRequest.model_validate_json(msg.data)
    assert (woke.run_id, woke.resume_approval) == ("publish.m2", record.id)
    assert (await store.get(record.id))[0].woken  # type: ignore[index]
    assert await actions_published(bus, "mcp__youtube__upload") == []
