"""Approvals on Discord: real discord.py against the fake Discord, the real approvals KV."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.messages import ApprovalRecord
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.natsserver import NatsServer

from .conftest import APPROVER, SECRET, STRANGER, Propose, RunningGateway
from .helpers import actions_published, buttons, decisions, eventually


async def posted_message(fake: FakeDiscord, approval_id: str) -> dict:
    def find() -> dict | None:
        return next((m for m in fake.posted("approvals")
                     if f"koda:approve:{approval_id}" in buttons(m)), None)
    return await fake.wait_for(find)


async def test_approval_is_posted_with_buttons_and_an_approver_click_runs_it_once(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    record = await propose()
    message = await posted_message(fake_discord, record.id)
    assert gateway.service is not None
    assert "koda_approvals_pending 1.0" in generate_latest(gateway.service.registry).decode()
    assert buttons(message) == [f"koda:approve:{record.id}", f"koda:reject:{record.id}",
                                f"koda:edit:{record.id}"]
    assert "video.publish" in message["content"] and "New video is ready" in message["content"]

    # Someone not on the allowlist: told so privately, and nothing changes.
    refused = await fake_discord.click(message["id"], f"koda:approve:{record.id}", STRANGER)
    answer = await fake_discord.response(refused)
    assert answer["type"] == 4 and answer["data"]["flags"] & 64  # ephemeral message
    assert "not on" in answer["data"]["content"]
    store = ApprovalStore(bus)
    assert (await store.get(record.id))[0].status == "pending"  # type: ignore[index]
    assert buttons(fake_discord.messages[message["id"]])
    assert await actions_published(bus, "video.publish") == []

    # An approver: the click is acknowledged at once (a deferred update), then the message
    # shows the outcome and the action is published once.
    as_seen = copy.deepcopy(fake_discord.messages[message["id"]])
    clicked = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER)
    assert (await fake_discord.response(clicked))["type"] == 6
    update = await fake_discord.outcome(clicked)
    assert update["id"] == message["id"]  # the clicked message itself is updated
    assert "Approved" in update["content"] and update["components"] == []
    decided = (await store.get(record.id))[0]  # type: ignore[index]
    assert decided.status == "approved" and decided.decided_by == str(APPROVER)
    assert decided.dispatched
    published = await actions_published(bus, "video.publish")
    assert len(published) == 1
    assert published[0].idempotency_key == f"approval:{record.id}"
    assert published[0].approval_id == record.id and published[0].args["title"] == "Week 12"

    # A second click, by the approver again: nothing more happens.
    assert buttons(fake_discord.messages[message["id"]]) == []
    again = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER,
                                     as_seen=as_seen)
    repeat = await fake_discord.outcome(again)
    assert repeat["flags"] & 64 and "already approved" in repeat["content"]
    # The repeat has been answered: it decided nothing and published nothing new.
    assert len(await decisions(bus, record.id)) == 1
    assert len(await actions_published(bus, "video.publish")) == 1
    assert gateway.service is not None
    metrics = generate_latest(gateway.service.registry).decode()
    assert 'koda_approvals_total{outcome="approved"} 1.0' in metrics
    assert "koda_approval_wait_seconds_count 1.0" in metrics
    assert "koda_approvals_pending 0.0" in metrics


async def test_the_approver_sees_the_start_of_the_draft_to_approve(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose,
        gw_settings: KodaSettings) -> None:
    draft = gw_settings.expanded_home() / "data" / "drafts" / "publish-video.m1" / "post.md"
    draft.parent.mkdir(parents=True)
    draft.write_text(f"Week 12: the new video is out!\nkey={SECRET}\n" + "more text " * 200)
    record = await propose(artifact="data/drafts/publish-video.m1/post.md")
    content = (await posted_message(fake_discord, record.id))["content"]
    assert "Week 12: the new video is out!" in content and "key=[redacted]" in content
    assert len(content) <= 2000 and SECRET not in content


async def test_two_clicks_at_once_give_one_action(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    record = await propose()
    message = await posted_message(fake_discord, record.id)
    as_seen = copy.deepcopy(message)
    # A double click: both reach the bot before either answer edits the message.
    first, second = await asyncio.gather(
        fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER, as_seen),
        fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER, as_seen))
    answers = [await fake_discord.outcome(first), await fake_discord.outcome(second)]
    # One click decided (its message shows it), the other is told privately it changed nothing.
    told = [a for a in answers if a["flags"] & 64]
    assert len(told) == 1 and "Nothing changed" in told[0]["content"]
    assert next(a for a in answers if not a["flags"] & 64)["id"] == message["id"]
    assert (await ApprovalStore(bus).get(record.id))[0].status == "approved"  # type: ignore[index]
    assert len(await decisions(bus, record.id)) == 1  # both clicks answered, one decision
    assert len(await actions_published(bus, "video.publish")) == 1


async def test_reactions_decide_for_approvers_only(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    approve_me, reject_me = await propose(), await propose()
    m1 = await posted_message(fake_discord, approve_me.id)
    m2 = await posted_message(fake_discord, reject_me.id)
    store = ApprovalStore(bus)

    await fake_discord.react(m1["id"], "✅", STRANGER)
    removed = await fake_discord.wait_for(lambda: [c for c in fake_discord.calls
                                                   if c.method == "DELETE" and "reactions" in c.path])
    assert removed[0].path.endswith(f"/{STRANGER}")  # the stranger's reaction is taken away
    assert (await store.get(approve_me.id))[0].status == "pending"  # type: ignore[index]

    await fake_discord.react(m1["id"], "✅", APPROVER)
    await fake_discord.react(m2["id"], "❌", APPROVER)
    # 30 s: this once timed out at 10 s in a full CI run and could not be reproduced since.
    await fake_discord.wait_for(lambda: "Approved" in fake_discord.messages[m1["id"]]["content"],
                                timeout=30)
    await fake_discord.wait_for(lambda: "Rejected" in fake_discord.messages[m2["id"]]["content"],
                                timeout=30)
    assert buttons(fake_discord.messages[m1["id"]]) == []
    assert (await store.get(reject_me.id))[0].status == "rejected"  # type: ignore[index]
    published = await actions_published(bus, "video.publish")
    assert [p.approval_id for p in published] == [approve_me.id]


async def test_a_restarted_gateway_resolves_a_click_on_an_earlier_post(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    record = await propose()
    message = await posted_message(fake_discord, record.id)
    await gateway.restart()
    assert fake_discord.identified == 2
    # The new process does not post it again: the record remembers its message.
    await asyncio.sleep(0.5)
    assert len([m for m in fake_discord.posted("approvals") if buttons(m)]) == 1

    clicked = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER)
    assert "Approved" in (await fake_discord.outcome(clicked))["content"]
    assert len(await actions_published(bus, "video.publish")) == 1


async def test_proposals_made_while_the_gateway_is_down_are_posted_when_it_starts(
        gw_settings: object, fake_discord: FakeDiscord, propose: Propose) -> None:
    record = await propose()
    running = RunningGateway(gw_settings, fake_discord)  # type: ignore[arg-type]
    await running.start()
    try:
        await posted_message(fake_discord, record.id)
    finally:
        await running.stop()


async def test_expiry_reminds_once_then_rejects(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    now = datetime.now(UTC)
    # A 13 s window of which 10 s have passed: past the reminder point, expiring in 3 s.
    record = await ApprovalStore(bus).propose(ApprovalRecord(
        id="publish-video.m1.video.publish.1", task="publish-video", run_id="publish-video.m1",
        action="video.publish", reason="ready", created_at=now - timedelta(seconds=10),
        expires_at=now + timedelta(seconds=3)))
    message = await posted_message(fake_discord, record.id)
    as_seen = copy.deepcopy(message)  # what a person's client still shows

    def reminders() -> list[dict]:
        return [m for m in fake_discord.posted("approvals") if "Reminder" in m["content"]]

    await fake_discord.wait_for(reminders)
    await fake_discord.wait_for(lambda: "Expired" in fake_discord.messages[message["id"]]["content"])
    assert len(reminders()) == 1
    assert buttons(fake_discord.messages[message["id"]]) == []
    stored = (await ApprovalStore(bus).get(record.id))[0]  # type: ignore[index]
    assert stored.status == "expired" and stored.decided_by == "expiry"

    # A click after expiry (from a client that still shows the buttons) changes nothing.
    late = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER,
                                    as_seen=as_seen)
    assert "already expired" in (await fake_discord.outcome(late))["content"]
    assert await actions_published(bus, "video.publish") == []
    assert await eventually(lambda: _expired_counted(gateway))


async def _expired_counted(gateway: RunningGateway) -> bool:
    assert gateway.service is not None
    return bool(gateway.service.desk.total.labels("expired")._value.get() == 1)


async def test_a_pending_approval_survives_nats_and_the_gateway_restarting(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus,
        nats_server: NatsServer) -> None:
    record = await propose()
    message = await posted_message(fake_discord, record.id)
    await gateway.stop()
    nats_server.restart()  # the approvals KV is on disk (file storage, sync always)
    await gateway.start()
    clicked = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER)
    assert "Approved" in (await fake_discord.outcome(clicked))["content"]
    assert len(await actions_published(bus, "video.publish")) == 1


async def test_an_approver_edits_the_arguments_in_a_form_and_approves_them(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    """Edit opens a form with the arguments as JSON; submitting it approves the edited call
    (signed as edited, `original_args` kept) and wakes the paused run."""
    store = ApprovalStore(bus)
    record = await store.propose(ApprovalRecord(
        id="publish.m1.abcdef012345", task="publish", run_id="publish.m1",
        action="mcp__youtube__upload", args={"title": "hello"}, tool="mcp__youtube__upload",
        tool_input={"title": "hello"}, tool_use_id="toolu_01",
        session_id="00000000-0000-4000-8000-000000000000",
        expires_at=datetime.now(UTC) + timedelta(hours=1)))
    message = await posted_message(fake_discord, record.id)
    refused = await fake_discord.click(message["id"], f"koda:edit:{record.id}", STRANGER)
    assert "not on" in (await fake_discord.response(refused))["data"]["content"]
    opened = await fake_discord.click(message["id"], f"koda:edit:{record.id}", APPROVER)
    form = await fake_discord.response(opened)
    assert form["type"] == 9 and '"hello"' in str(form["data"])
    bad = await fake_discord.submit_form(opened, APPROVER, {"args": "[1, 2]"})
    assert "JSON object" in (await fake_discord.response(bad))["data"]["content"]
    assert (await store.get(record.id))[0].status == "pending"  # type: ignore[index]
    # The form closes on submit (as on Discord): the approver opens it again.
    opened = await fake_discord.click(message["id"], f"koda:edit:{record.id}", APPROVER)
    await fake_discord.response(opened)
    sent = await fake_discord.submit_form(opened, APPROVER, {"args": '{"title": "better"}'})
    await fake_discord.response(sent)

    async def decided() -> ApprovalRecord | None:
        got = await store.get(record.id)
        return got[0] if got and got[0].woken else None
    done = await eventually(decided)
    assert done.status == "approved" and done.decided_by == str(APPROVER)
    assert done.args == {"title": "better"} and done.original_args == {"title": "hello"}
    assert not done.dispatched  # a paused tool call runs in its resumed session, not in ACTIONS

