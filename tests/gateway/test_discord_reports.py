"""Reports, alerts, chat, slash commands and the digest on Discord, and no secret anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js.errors import KeyNotFoundError

from koda.shared.bus import Bus
from koda.shared.messages import RunRequest
from tests.fake_discord import FakeDiscord

from .conftest import APPROVER, OWNER, SECRET, STRANGER, Propose, RunningGateway
from .helpers import all_events, buttons


async def test_run_reports_alerts_and_the_digest_reach_their_channels_redacted(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    await bus.emit(bus.event("run.finished", "daily-post done", task="daily-post",
                             run_id="daily-post.1700000000000",
                             data={"outcome": "done", "turns": 7, "cost_usd": 0.0123,
                                   "duration_s": 42.5, "artifacts": ["data/drafts/x/post.md"],
                                   "result": f"Posted it. Used {SECRET} to log in."}))
    await bus.emit(bus.event("run.failed", "weekly failed", task="weekly", run_id="weekly.1",
                             data={"outcome": "turn_cap", "error": "hit 25 turns"}))
    await bus.emit(bus.event("alert", "Rate limited until 10:00", severity="warning",
                             data={"kind": "rate_limit"}))
    await bus.emit(bus.event("incident.opened", "worker crash loop", severity="critical",
                             data={"class": "crash_loop"}))
    await bus.emit(bus.event("run.started", "not reported", task="daily-post"))
    await bus.emit(bus.event("agent.notify", "Draft is ready for review", task="blog",
                             data={"text": "Draft is ready for review"}))
    await bus.emit(bus.event("scrape.needs_human", "skool login failed twice", severity="error",
                             data={"site": "skool"}))

    reports = await fake_discord.wait_for(lambda: len(fake_discord.posted("reports")) >= 3
                                          and fake_discord.posted("reports"))
    assert "Draft is ready" in reports[2]["content"]
    first, second = reports[0]["content"], reports[1]["content"]
    assert "daily-post" in first and "7 turns" in first and "$0.0123" in first
    assert "Posted it" in first and "[redacted]" in first and SECRET not in first
    assert "turn_cap" in second and "hit 25 turns" in second
    alerts = await fake_discord.wait_for(lambda: len(fake_discord.posted("alerts")) >= 3
                                         and fake_discord.posted("alerts"))
    assert "rate_limit" in alerts[0]["content"] and "crash loop" in alerts[1]["content"]
    assert "skool login failed" in alerts[2]["content"]

    assert gateway.service is not None
    text = await gateway.service.post_digest(datetime.now(UTC) - timedelta(hours=1))
    assert "Daily digest" in text and "Runs: 2" in text and "1 done" in text
    assert "1 turn_cap" in text and "Alerts: 2" in text
    await fake_discord.wait_for(lambda: any("Daily digest" in m["content"]
                                            for m in fake_discord.posted("reports")))
    assert not any("not reported" in m["content"] for m in fake_discord.messages.values())


async def test_owner_chat_starts_a_run_and_the_answer_comes_back_in_its_thread(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus) -> None:
    await fake_discord.say("What is on today?", STRANGER, "chat")
    await fake_discord.say("What is on today?", OWNER, "reports")  # not the chat channel
    await fake_discord.say("What is on today?", OWNER, "chat")
    thread_id = (await fake_discord.wait_for(lambda: list(fake_discord.threads)))[0]
    assert len(fake_discord.threads) == 1
    queued = await bus.js.get_last_msg("RUNS", "koda.runs.chat")
    request = RunRequest.from_bytes(queued.data)
    assert request.trigger == "chat" and request.prompt == "What is on today?"
    assert request.reply_to == f"discord:{thread_id}" and request.run_id.startswith("chat.c")
    info = await bus.js.stream_info("RUNS", subjects_filter="koda.runs.chat")
    assert (info.state.subjects or {}).get("koda.runs.chat") == 1

    await bus.emit(bus.event("run.finished", "chat done", task="chat", run_id=request.run_id,
                             data={"outcome": "done", "result": "Two posts and a video.",
                                   "reply_to": request.reply_to}))
    answer = await fake_discord.wait_for(
        lambda: [m for m in fake_discord.posted(thread_id) if "Two posts" in m["content"]])
    assert answer and not any("Two posts" in m["content"] for m in fake_discord.posted("reports"))

    dm = await fake_discord.say("And tomorrow?", OWNER, dm=True)
    await fake_discord.wait_for(lambda: any("On it" in m["content"]
                                            for m in fake_discord.posted(dm["channel_id"])))


async def test_slash_commands_for_allowed_users_only(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus, propose: Propose) -> None:
    assert [c["name"] for c in fake_discord.commands] == ["koda"]
    record = await propose()

    async def ask(user: int, sub: str, **options: str) -> str:
        iid = await fake_discord.slash("koda", user, sub, **options)
        first = await fake_discord.response(iid)
        assert first["type"] in (4, 5) and first["data"]["flags"] & 64  # private, answered at once
        answer = await fake_discord.outcome(iid)
        assert answer["flags"] & 64
        return str(answer["content"])

    assert "not allowed" in await ask(STRANGER, "run", task="daily-post")
    assert "not allowed" in await ask(STRANGER, "pause", task="daily-post")
    status = await ask(APPROVER, "status")
    assert "gateway" in status and "Pending approvals:** 1" in status
    assert record.id in await ask(APPROVER, "pending")
    assert "Queued `daily-post`" in await ask(OWNER, "run", task="daily-post")
    assert "no task 'nope'" in await ask(APPROVER, "run", task="nope")
    assert "Paused" in await ask(APPROVER, "pause", task="daily-post", reason="holiday")
    pause = await bus.kv["scheduler"].get("pause.daily-post")
    assert pause.value is not None and b"holiday" in pause.value
    assert "Resumed" in await ask(APPROVER, "resume", task="daily-post")
    try:
        await bus.kv["scheduler"].get("pause.daily-post")
        raise AssertionError("still paused")
    except KeyNotFoundError:
        pass
    info = await bus.js.stream_info("RUNS", subjects_filter="koda.runs.daily-post")
    assert (info.state.subjects or {}).get("koda.runs.daily-post") == 1


async def test_no_secret_in_any_discord_message_or_event(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus, propose: Propose) -> None:
    # The agent leaks the secret into everything it can write in a proposal, and points its
    # artifact at the credentials file.
    record = await propose(reason=f"Uses token {SECRET}", artifact="data/drafts/../../.env")
    message = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if buttons(m)), None))
    await fake_discord.react(message["id"], "✅", APPROVER)
    await fake_discord.wait_for(lambda: "Approved" in fake_discord.messages[message["id"]]["content"])
    await bus.emit(bus.event("alert", f"login failed with {SECRET}", data={"kind": "auth"}))
    await fake_discord.wait_for(lambda: fake_discord.posted("alerts"))
    iid = await fake_discord.slash("koda", APPROVER, "pending")
    await fake_discord.response(iid)

    assert "[redacted]" in message["content"]
    assert SECRET not in fake_discord.all_text()
    assert SECRET not in str([m for m in fake_discord.messages.values()])
    # Every event but the alert this test emitted itself (as a careless service might).
    events = [e for e in await all_events(bus) if e.event != "alert"]
    assert {e.event for e in events} >= {"approval.requested", "approval.decided"}
    assert all(SECRET not in e.model_dump_json() for e in events)
    stored = await bus.kv["approvals"].get(record.id)
    assert stored.value is not None and SECRET.encode() not in stored.value
