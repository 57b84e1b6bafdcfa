"""Everything the bot sent and everything the fake answered in a busy session matches Discord's
OpenAPI description: the fake cannot drift from Discord, nor the bot from what Discord takes."""

from __future__ import annotations

from koda.shared.bus import Bus
from tests.discord_api.spec import request_problems, response_problems
from tests.fake_discord import FakeDiscord

from .conftest import APPROVER, OWNER, STRANGER, Propose, RunningGateway
from .helpers import buttons


async def test_every_request_and_answer_of_a_session_matches_discords_description(
        gateway: RunningGateway, fake_discord: FakeDiscord, bus: Bus, propose: Propose) -> None:
    first, second = await propose(), await propose()
    m1 = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if first.id in m["content"]), None))
    m2 = await fake_discord.wait_for(lambda: next(
        (m for m in fake_discord.posted("approvals") if second.id in m["content"]), None))
    # Clicks: refused (type 4), decided (deferred update, then @original), repeated (follow-up).
    ids = buttons(m1)
    await fake_discord.outcome(await fake_discord.click(m1["id"], ids[0], STRANGER))
    as_seen = dict(m1)
    await fake_discord.outcome(await fake_discord.click(m1["id"], ids[0], APPROVER))
    await fake_discord.outcome(await fake_discord.click(m1["id"], ids[0], APPROVER, as_seen))
    # A stranger's reaction is taken away; an approver's decides.
    await fake_discord.react(m2["id"], "✅", STRANGER)
    await fake_discord.react(m2["id"], "❌", APPROVER)
    await fake_discord.wait_for(lambda: "Rejected" in fake_discord.messages[m2["id"]]["content"])
    # A slash command (deferred, then @original), chat (a thread), a report through a 429.
    await fake_discord.outcome(await fake_discord.slash("koda", APPROVER, "pending"))
    await fake_discord.say("hi", OWNER, "chat")
    await fake_discord.wait_for(lambda: fake_discord.threads)
    fake_discord.throttle(0.2)
    await bus.emit(bus.event("agent.notify", "note", data={"text": "note"}))
    await fake_discord.wait_for(lambda: fake_discord.posted("reports"))
    await fake_discord.wait_for(lambda: any(c.status == 429 for c in fake_discord.calls))

    calls = fake_discord.calls
    kinds = {(c.method, c.path.split("/")[1], c.status) for c in calls}
    assert {("POST", "interactions", 200), ("PATCH", "webhooks", 200), ("POST", "webhooks", 200),
            ("POST", "channels", 429), ("DELETE", "channels", 204)} <= kinds
    problems = []
    for call in calls:
        problems += request_problems(call.method, call.path, call.body)
        problems += response_problems(call.method, call.path, call.status, call.headers,
                                      call.response)
    assert not problems, "\n".join(sorted(set(problems)))
