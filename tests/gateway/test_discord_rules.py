"""The bot keeps Discord's rules as the fake enforces them: an answer to every click within
3 s even with NATS down, bounded button ids, no pings from agent text, one refused post never
blocking the rest, rate limits honoured, RESUME instead of a new IDENTIFY."""

from __future__ import annotations

import asyncio

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.messages import ApprovalRecord
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.natsserver import NatsServer

from .conftest import APPROVER, OWNER, SECRET, Propose, RunningGateway, ago
from .helpers import actions_published, all_events, buttons, eventually

PING = "@everyone @here <@&123456789012345678> look at this"


async def test_agent_text_reaches_discord_with_every_mention_disabled(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus, propose: Propose) -> None:
    record = await propose(reason=f"Because {PING}")
    await bus.emit(bus.event("agent.notify", PING, task="blog", data={"text": PING}))
    await bus.emit(bus.event("run.finished", "done", task="daily-post", run_id="daily-post.1",
                             data={"outcome": "done", "result": PING}))
    await bus.emit(bus.event("alert", f"scraped page says {PING}", data={"kind": "scrape"}))
    await fake_discord.say("hello", OWNER, "chat")
    thread = (await fake_discord.wait_for(lambda: list(fake_discord.threads)))[0]
    await bus.emit(bus.event("run.finished", "chat", task="chat", run_id="chat.c1",
                             data={"outcome": "done", "result": PING,
                                   "reply_to": f"discord:{thread}"}))

    def with_ping() -> list[dict]:
        return [m for m in fake_discord.messages.values()
                if m["author"]["bot"] and "@everyone" in m["content"]]
    posted = await fake_discord.wait_for(lambda: len(with_ping()) >= 5 and with_ping())
    assert any(record.id in m["content"] for m in posted)
    for message in posted:
        # Discord would render the text but ping nobody.
        assert message["allowed_mentions"] == {"parse": []}, message["content"]
        assert not message["mention_everyone"] and message["mention_roles"] == []
    assert all(p.get("allowed_mentions") == {"parse": []} for p in fake_discord.sent_payloads())


async def test_a_click_is_answered_in_time_with_nats_down_and_its_outcome_told_later(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus,
        nats_server: NatsServer) -> None:
    record = await propose()
    message = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if buttons(m)), None))
    nats_server.stop()
    try:
        clicked = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER)
        # The fake refuses a callback after 3 s (10062): one recorded means it came in time.
        assert (await fake_discord.response(clicked, timeout=5))["type"] == 6
        waiting = await fake_discord.outcome(clicked, timeout=30)
        assert waiting["flags"] & 64 and "not answering" in waiting["content"]
    finally:
        nats_server.start()
    done = await fake_discord.wait_for(
        lambda: "Done: approved" in str(fake_discord.interactions[clicked].followups), timeout=60)
    assert done
    assert "Approved" in fake_discord.messages[message["id"]]["content"]
    assert buttons(fake_discord.messages[message["id"]]) == []
    assert [p.approval_id for p in await actions_published(bus, "video.publish")] == [record.id]
    assert not [c for c in fake_discord.refusals if "/callback" in c.path]


async def test_button_ids_stay_within_100_characters_whatever_the_task_id(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    task = "t" * 63  # the longest task id tasks.json allows
    run_id = f"{task}.m1700000000000"
    record = await ApprovalStore(bus).propose(ApprovalRecord(
        id=f"{run_id}.video.publish.0123456789ab", task=task, run_id=run_id,
        action="video.publish", reason="long ids", args={"x": 1}, created_at=ago(seconds=1)))
    assert len(f"koda:approve:{record.id}") > 100
    message = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if record.id in m["content"]), None))
    ids = buttons(message)
    assert len(ids) == 3 and all(len(i) <= 100 for i in ids)
    assert not fake_discord.refusals
    clicked = await fake_discord.click(message["id"], ids[0], APPROVER)
    assert "Approved" in (await fake_discord.outcome(clicked))["content"]
    assert [p.approval_id for p in await actions_published(bus, "video.publish")] == [record.id]


async def test_one_refused_post_does_not_hold_back_the_others(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    fake_discord.blocked_words = ("forbidden-word",)
    first = await propose(reason="fine")
    blocked = await propose(reason="contains forbidden-word")
    last = await propose(reason="also fine")
    running = RunningGateway(gw_settings, fake_discord)
    service = await running.start()
    try:
        for record in (first, last):
            await fake_discord.wait_for(lambda r=record: any(  # type: ignore[misc]
                r.id in m["content"] for m in fake_discord.posted("approvals")))
        assert not any(blocked.id in m["content"] for m in fake_discord.posted("approvals"))
        refusal = await eventually(
            lambda: _async(service.health_detail().get("discord_last_refusal")))
        assert blocked.id in refusal and "200000" in refusal
        alerts = await eventually(lambda: _alerts(bus, "200000"))
        assert len(alerts) == 1
    finally:
        await running.stop()


async def _async(value: object) -> object:
    return value


async def _alerts(bus: Bus, text: str) -> list:
    return [e for e in await all_events(bus)
            if e.event == "alert" and e.data.get("kind") == "discord" and text in e.summary]


async def test_redaction_runs_before_clipping_and_long_approvals_keep_id_and_outcome(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose,
        gw_settings: KodaSettings) -> None:
    draft = gw_settings.expanded_home() / "data" / "drafts" / "long" / "post.md"
    draft.parent.mkdir(parents=True)
    draft.write_text("```\n" + "line of the draft\n" * 300)
    # The secret straddles every plausible cut point of a 2,000-character message.
    reason = "".join(f"{'x' * n} {SECRET} " for n in range(1, 120))
    record = await propose(reason=reason, artifact="data/drafts/long/post.md")
    message = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if record.id in m["content"]), None))
    content = message["content"]
    assert len(content) <= 2000 and content.count("```") % 2 == 0
    assert "Approve or reject" in content
    assert not any(SECRET[:n] in content for n in range(6, len(SECRET) + 1)), "a secret's prefix"
    await fake_discord.react(message["id"], "✅", APPROVER)
    decided = await fake_discord.wait_for(
        lambda: "Approved" in fake_discord.messages[message["id"]]["content"]
        and fake_discord.messages[message["id"]]["content"])
    assert len(decided) <= 2000 and f"id `{record.id}`" in decided
    assert not fake_discord.refusals


async def test_rate_limits_are_waited_out_and_nothing_is_lost_or_doubled(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    fake_discord.throttle(retry_after=0.6)
    for n in range(7):  # over the 5-per-5-s bucket of one channel
        await bus.emit(bus.event("agent.notify", f"note {n}", data={"text": f"note {n}"}))
    notes = await fake_discord.wait_for(
        lambda: len(fake_discord.posted("reports")) >= 7 and fake_discord.posted("reports"),
        timeout=30)
    assert sorted(m["content"][-6:] for m in notes) == [f"note {n}" for n in range(7)]
    posts = [c for c in fake_discord.calls
             if c.method == "POST" and c.path.endswith(f"/{fake_discord.channels['reports']}/messages")]
    limited = [c for c in posts if c.status == 429]
    assert limited, "the fake answered 429 at least once"
    after = [c for c in posts if c.at > limited[0].at]
    assert after and after[0].at - limited[0].at >= 0.5  # retry_after was honoured


async def test_a_dropped_connection_resumes_and_missed_events_are_replayed(
        gateway: RunningGateway, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    record = await propose()
    message = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if buttons(m)), None))
    await fake_discord.disconnect(4000)  # Discord's "unknown error": resumable
    await fake_discord.react(message["id"], "✅", APPROVER)  # happens while the bot is away
    await fake_discord.wait_for(lambda: fake_discord.resumed == 1, timeout=20)
    await fake_discord.wait_for(
        lambda: "Approved" in fake_discord.messages[message["id"]]["content"], timeout=20)
    assert fake_discord.identifies == 1
    assert [p.approval_id for p in await actions_published(bus, "video.publish")] == [record.id]


async def test_the_deadline_is_real(fake_discord: FakeDiscord) -> None:
    """The fake itself: a late first answer and a second answer are refused as Discord does."""
    import aiohttp

    fake_discord.response_deadline = 0.2
    channel = fake_discord.channels["approvals"]
    message = {"id": "1", "channel_id": channel, "components": [
        {"type": 1, "components": [{"type": 2, "custom_id": "x", "label": "X", "style": 1}]}]}
    fake_discord.messages["1"] = message
    late = fake_discord._interaction(3, APPROVER, channel, {"custom_id": "x"}, message)
    twice = fake_discord._interaction(3, APPROVER, channel, {"custom_id": "x"}, message)
    async with aiohttp.ClientSession() as http:
        url = f"{fake_discord.api_base}/interactions/{twice['id']}/{twice['token']}/callback"
        first = await http.post(url, json={"type": 6})
        second = await http.post(url, json={"type": 6})
        await asyncio.sleep(0.25)  # past the deadline
        url = f"{fake_discord.api_base}/interactions/{late['id']}/{late['token']}/callback"
        too_late = await http.post(url, json={"type": 6})
        assert first.status == 204
        assert (second.status, (await second.json())["code"]) == (400, 40060)
        assert (too_late.status, (await too_late.json())["code"]) == (404, 10062)


async def test_a_channel_that_does_not_exist_is_reported_and_the_others_keep_working(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, bus: Bus) -> None:
    settings = gw_settings.model_copy(update={"discord_reports_channel": 1234567890123})
    running = RunningGateway(settings, fake_discord)
    service = await running.start()
    try:
        await bus.emit(bus.event("agent.notify", "to nowhere", data={"text": "to nowhere"}))
        await bus.emit(bus.event("alert", "still alerting", data={"kind": "test"}))
        await fake_discord.wait_for(lambda: any("still alerting" in m["content"]
                                                for m in fake_discord.posted("alerts")))
        refusal = await eventually(
            lambda: _async(service.health_detail().get("discord_last_refusal")))
        assert "1234567890123" in refusal and "10003" in refusal
        assert len(await eventually(lambda: _alerts(bus, "10003"))) == 1
    finally:
        await running.stop()
