"""The creator's week, end to end: the starter home's tasks enabled and run by the real worker
(the real Claude Code CLI, driven by the scripted fake model), every public action approved by
an approver's click in the fake Discord through the real gateway, the real actions service
running the home's scripts with only their own secrets, the real scraper logging in to the
community, and fakes of Bluesky, X, WordPress, Airtable and Google. Afterwards the posts, the
blog post, the Airtable rows, the public video and the analytics are on the fakes and in the
home."""

from __future__ import annotations

import asyncio
import json
import os
import re
import warnings
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from koda.services.actions.service import ActionsService
from koda.services.gateway.service import GatewayService
from koda.services.scraper.service import ScraperService
from koda.services.worker.service import WorkerService
from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Text, ToolUse
from tests.fake_discord import FakeDiscord
from tests.fakes.airtable import FakeAirtable
from tests.fakes.bluesky import FakeBluesky
from tests.fakes.community import FakeCommunity, member_list
from tests.fakes.google import FakeGoogle
from tests.fakes.wordpress import FakeWordPress
from tests.fakes.x import FakeX
from tests.inprocess import serving
from tests.natsserver import free_port_block
from tests.worker.conftest import Events

with warnings.catch_warnings():
    # discord.py imports audioop (voice), deprecated since 3.11; Koda uses no voice.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"),
                                reason="needs Debian's chromium (apt-get install chromium)")

APPROVER = 424242424242424242  # the Discord user allowed to approve
POST = "Shipped the new editor this week: undo that survives a restart. #buildinpublic"
FINAL = ("# Undo that survives a restart\n\nMost editors forget your history when they close.\n\n"
         "## How it works\n\n- every change is a file\n- the log is replayed on start\n")
VIDEO: dict[str, Any] = {"video_id": "vidWeek00012", "title": "I rebuilt undo in a week",
         "description": "Undo that survives a restart.\n\n00:00 Why\n02:10 How", "tags": ["editor", "devlog"]}


def saved_path(call: Call) -> str:
    match = re.search(r"saved (data/drafts/\S+)", call.last_tool_result())
    assert match, call.last_tool_result()
    return match.group(1)


def nth(turn: int, *replies: Reply) -> Reply:
    """The reply for this turn; the last one repeats."""
    return replies[min(turn, len(replies) - 1)]


def model(call: Call) -> Reply:
    """The scripted model: what the agent does in each starter task (and blog step)."""
    prompt, turn = call.prompt, call.turn
    if "Write one post" in prompt:
        return nth(turn, ToolUse.one("mcp__koda__save_draft", name="post.md", content=POST),
                   ToolUse.one("mcp__koda__propose_action", action="social.post",
                               args={"text": POST, "link": "https://example.com/undo"},
                               reason="today's post", artifact=saved_path(call) if turn == 1 else None),
                   Text("proposed the post"))
    if "Pick one topic" in prompt:
        return nth(turn, ToolUse.one("mcp__koda__save_draft", name="outline.md", content="1. Why\n2. How"),
                   Text("outlined"))
    if "write the full post" in prompt:
        return nth(turn, ToolUse.one("mcp__koda__save_draft", name="draft.md", content=FINAL),
                   Text("drafted"))
    if "Edit the draft" in prompt:
        if turn == 0:
            return ToolUse.one("mcp__koda__save_draft", name="final.md", content=FINAL)
        if turn == 1:
            path = saved_path(call)
            return ToolUse.one("mcp__koda__propose_action", action="blog.publish", artifact=path,
                               args={"title": "Undo that survives a restart", "draft": path,
                                     "excerpt": "Editors forget; this one does not.", "tags": ["editor"]},
                               reason="the week's post")
        return Text("proposed the post")
    if "youtube-stats" in prompt:
        return nth(turn, ToolUse.one("mcp__koda__run_script", name="youtube-stats", args={}),
                   ToolUse.one("mcp__koda__save_draft", name="weekly-report.md",
                               content="Views up; try shorter intros."),
                   ToolUse.one("mcp__koda__notify", text="Weekly report ready: views up."),
                   Text("reported"))
    if "publish-video" in call.system or "youtube-ready" in call.system:
        if turn == 0:
            return ToolUse.one("mcp__koda__run_script", name="youtube-ready", args={})
        if turn == 1:
            if VIDEO["video_id"] not in call.last_tool_result():
                return Text("no upload is ready: " + call.last_tool_result()[:500])
            return ToolUse.one("mcp__koda__save_draft", name="publish.md", content=VIDEO["title"])
        if turn == 2:
            return ToolUse.one("mcp__koda__propose_action", action="video.publish", args=VIDEO,
                               reason="title 1: it says what changed")
        return Text("proposed the publish")
    return Text("nothing to do")


def env_for(f: dict[str, Any]) -> dict[str, str]:
    g = f["google"]
    return {
        "BLUESKY_HANDLE": "maker.example.net", "BLUESKY_APP_PASSWORD": "bsky-app-pass-1",
        "BLUESKY_SERVICE_URL": f["bluesky"].url,
        "X_API_KEY": "x-consumer-key", "X_API_SECRET": "x-consumer-secret", "X_ACCESS_TOKEN": "99-x-token",
        "X_ACCESS_TOKEN_SECRET": "x-token-secret", "X_API_URL": f["x"].url,
        "WORDPRESS_URL": f["wordpress"].url, "WORDPRESS_USER": "maker",
        "WORDPRESS_APP_PASSWORD": "wpap wpap wpap wpap",
        "SKOOL_EMAIL": "maker@example.net", "SKOOL_PASSWORD": "community-pass-9",
        "COMMUNITY_MEMBERS_URL": f"{f['community'].url}/members",
        "AIRTABLE_TOKEN": "patMaker.secret", "AIRTABLE_BASE_ID": "appMakerBase0001",
        "AIRTABLE_API_URL": f["airtable"].url,
        "GOOGLE_CLIENT_ID": "maker.apps.googleusercontent.com", "GOOGLE_CLIENT_SECRET": "GOCSPX-maker",
        "YOUTUBE_REFRESH_TOKEN": "1//maker-refresh", "GOOGLE_TOKEN_URL": f"{g.url}/token",
        "YOUTUBE_API_URL": f"{g.url}/youtube/v3", "YOUTUBE_ANALYTICS_URL": f"{g.url}/v2",
    }


def approve_button(message: dict[str, Any]) -> str | None:
    for row in message.get("components") or []:
        for component in row.get("components") or []:
            if str(component.get("custom_id", "")).startswith("koda:approve:"):
                return str(component["custom_id"])
    return None


async def approve_in_discord(discord: FakeDiscord, events: Events, wanted: int) -> set[str]:
    """An approver clicks Approve on each approval the gateway posts; wait until each approved
    action has run. Returns the approval ids."""
    clicked: dict[str, str] = {}

    async def loop() -> None:
        while len(clicked) < wanted:
            for message in discord.posted("approvals"):
                custom_id = approve_button(message)
                if custom_id and custom_id not in clicked.values():
                    interaction = await discord.click(message["id"], custom_id, APPROVER)
                    await discord.response(interaction, timeout=30)
                    clicked[custom_id.removeprefix("koda:approve:")] = custom_id
            await asyncio.sleep(0.2)
        await events.wait(lambda: {e.data.get("approval_id") for e in events.of("action.done")}
                          >= set(clicked), timeout=120)
    await asyncio.wait_for(loop(), 180)
    return set(clicked)


@pytest.mark.timeout(420)
async def test_the_creators_week(wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus,
                                 events: Events) -> None:
    fake_api.script = model
    # The worker fixture's 3 s ack deadline is for redelivery tests; on a loaded machine it lets
    # JetStream hand a live run to a second slot. Production's is far longer.
    discord = FakeDiscord()
    await discord.start()
    channels = discord.channels
    wsettings = wsettings.model_copy(update={
        "worker_ack_wait": 30.0,
        "discord_token": SecretStr("fake-bot-token-week"), "discord_guild": int(discord.guild_id),
        "discord_approvals_channel": int(channels["approvals"]),
        "discord_reports_channel": int(channels["reports"]),
        "discord_alerts_channel": int(channels["alerts"]), "discord_chat_channel": int(channels["chat"]),
        "discord_approvers": str(APPROVER), "discord_api_base": discord.api_base,
        "discord_gateway_url": discord.gateway_url, "console_port": free_port_block(1)})
    layout = HomeLayout(wsettings.expanded_home())
    with ExitStack() as stack:
        f: dict[str, Any] = {
            "bluesky": stack.enter_context(FakeBluesky("maker.example.net", "bsky-app-pass-1")),
            "x": stack.enter_context(FakeX(("x-consumer-key", "x-consumer-secret"),
                                           ("99-x-token", "x-token-secret"))),
            "wordpress": stack.enter_context(FakeWordPress("maker", "wpap wpap wpap wpap")),
            "community": stack.enter_context(FakeCommunity("maker@example.net", "community-pass-9",
                                                           member_list(12))),
            "airtable": stack.enter_context(FakeAirtable("patMaker.secret", "appMakerBase0001", "Members")),
            "google": stack.enter_context(FakeGoogle("maker.apps.googleusercontent.com", "GOCSPX-maker",
                                                     "1//maker-refresh")),
        }
        f["google"].add_video(VIDEO["video_id"], "raw upload 0412.mp4")
        env = env_for(f)
        layout.env.write_text("".join(f'{k}="{v}"\n' for k, v in env.items()))
        layout.env.chmod(0o600)
        # The starter tasks, enabled; the community is the site the sync's manifest entry names.
        tasks = json.loads(layout.tasks.read_text())
        for task in tasks["tasks"]:
            task["enabled"] = task["id"] != "self-heal"
        layout.tasks.write_text(json.dumps(tasks))
        layout.sites.write_text(json.dumps(f["community"].sites_json("skool")).replace(
            "SITE_EMAIL", "SKOOL_EMAIL").replace("SITE_PASSWORD", "SKOOL_PASSWORD"))

        from koda.shared.doctor import check_home
        assert check_home(layout, environ={"ANTHROPIC_API_KEY": "x"}) == []

        week = ["members-sync", "weekly-analytics", "daily-social-post", "blog-post", "video-publish"]
        async with serving(ScraperService(wsettings)), serving(ActionsService(wsettings)), \
                serving(WorkerService(wsettings)), serving(GatewayService(wsettings), timeout=30):
            now = datetime.now(UTC)
            for i, task in enumerate(week):
                run = RunRequest(task=task, run_id=f"{task}.m{int(now.timestamp() * 1000) + i}",
                                 scheduled_for=now, trigger="manual")
                await bus.publish(f"koda.runs.{task}", run, msg_id=run.run_id, timeout=30)
            try:
                # Two runs end; the three that propose a public action wait for a person.
                await events.wait(lambda: len(events.finished()) >= 2
                                  and len(events.of("run.awaiting_approval")) >= 3, timeout=240)
                approved = await approve_in_discord(discord, events, wanted=3)
                # Each approval resumes its session, which reads the action's result and ends.
                await events.wait(lambda: len(events.finished()) >= len(week), timeout=180)
            except TimeoutError:
                for e in events.items:
                    print("EVENT", e.event, e.task, e.run_id, str(e.data)[:300])
                raise
            failed = [e for e in events.finished() if e.event != "run.finished"]
            assert not failed, [(e.task, e.data.get("error")) for e in failed]
        await discord.stop()
        assert {r.id for r in await ApprovalStore(bus).all() if r.status == "approved"} == approved

        # The agent's next request after each approval carries what the action did.
        told = [c.last_tool_result() for c in fake_api.main_calls()
                if "approved by 424242424242424242" in c.last_tool_result()]
        assert len(told) == 3 and all("; ok" in t for t in told), told
        done = [e for e in events.of("action.done") if e.data.get("approval_id")]
        assert sorted(e.data["name"] for e in done) == ["blog.publish", "social.post", "video.publish"]
        assert all(e.data["ok"] for e in done), [e.data for e in done]

    # On the fakes: one post on each network, the blog post, the members, the public video.
    [bsky] = f["bluesky"].posts()
    assert bsky["value"]["text"] == f"{POST} https://example.com/undo"
    assert {x["features"][0]["$type"] for x in bsky["value"]["facets"]} == {
        "app.bsky.richtext.facet#link", "app.bsky.richtext.facet#tag"}
    assert [t["text"] for t in f["x"].tweets.values()] == [f"{POST} https://example.com/undo"]
    [blog] = f["wordpress"].published()
    assert blog["title"] == "Undo that survives a restart"
    assert "<li>every change is a file</li>" in blog["content"]
    assert set(f["airtable"].rows_by("Email")) == {m["email"] for m in member_list(12)}
    video = f["google"].videos[VIDEO["video_id"]]
    assert video["status"]["privacyStatus"] == "public" and video["snippet"]["title"] == VIDEO["title"]

    # In the home: what goals.md and the next week's runs read.
    analytics = layout.data / "analytics"
    youtube = json.loads((analytics / "youtube.json").read_text())
    assert youtube["totals"]["views"] == sum(f["google"].daily_views)
    assert json.loads((analytics / "members.json").read_text())["count"] == 12
    def items(name: str) -> list[dict[str, Any]]:
        return list(json.loads((analytics / f"{name}.json").read_text())["items"])
    assert {i["network"] for i in items("social")} == {"bluesky", "x"}
    assert [i["blog"] for i in items("blog")] == ["wordpress"]
    ready = json.loads((layout.data / "videos" / "ready.json").read_text())["videos"]
    assert ready[0]["video_id"] == VIDEO["video_id"]
    published = [json.loads(p.read_text()) for p in (layout.data / "published").glob("*.json")]
    assert sorted(p["action"] for p in published) == ["blog.publish", "social.post", "video.publish"]
    # No secret reached the model.
    sent = fake_api.all_text()
    assert not [k for k, v in env.items() if len(v) > 8 and not v.startswith("http") and v in sent]
