"""YouTube: analytics pulled into data/analytics/ and a prepared upload published after a
person's approval, over the OAuth 2.0 refresh-token flow (an expired access token is refreshed
and the call retried once; a revoked grant exits 77)."""

from __future__ import annotations

import json
from pathlib import Path

from koda.services.actions.service import ActionsService
from koda.shared.approvals import ApprovalStore, new_proposal
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import ActionRequest, ActionResult
from koda.shared.settings import KodaSettings
from tests.fakes.google import FakeGoogle
from tests.integrations.helpers import make_home, output, run, run_async
from tests.scraper.helpers import ask, serving

CLIENT, SECRET, REFRESH = "123-abc.apps.googleusercontent.com", "GOCSPX-client-secret", "1//refresh-token-x"


def google_env(g: FakeGoogle, refresh: str = REFRESH) -> dict[str, str]:
    return {"GOOGLE_CLIENT_ID": CLIENT, "GOOGLE_CLIENT_SECRET": SECRET, "YOUTUBE_REFRESH_TOKEN": refresh,
            "GOOGLE_TOKEN_URL": f"{g.url}/token", "YOUTUBE_API_URL": f"{g.url}/youtube/v3",
            "YOUTUBE_ANALYTICS_URL": f"{g.url}/v2"}


def test_analytics_land_in_data_analytics_after_a_token_refresh(tmp_path: Path) -> None:
    with FakeGoogle(CLIENT, SECRET, REFRESH) as g:
        g.add_video("vid00000001", "How I edit")
        layout = make_home(tmp_path, google_env(g))
        g.expire_next = 1  # the first access token is already dead: 401, refresh, one retry
        out = output(run(layout, "youtube-stats", {"end_date": "2026-11-29"}))
        report = json.loads((layout.data / "analytics" / "youtube.json").read_text())
        assert report["start_date"] == "2026-11-23" and report["end_date"] == "2026-11-29"
        assert report["totals"]["views"] == sum(g.daily_views)
        assert report["top_videos"][0]["title"] == "How I edit"
        assert (layout.data / "analytics" / "youtube" / "2026-11-29.json").exists()
        assert out["totals"]["views"] == sum(g.daily_views)
        assert g.refreshes == 2
        assert [e.reply.status for e in g.exchanges if e.request.path == "/v2/reports"][:2] == [401, 200]
        assert g.exchanges[1].reply.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_revoked_grant_exits_77_and_says_how_to_reconnect(tmp_path: Path) -> None:
    with FakeGoogle(CLIENT, SECRET, REFRESH) as g:
        layout = make_home(tmp_path, google_env(g, refresh="1//revoked-token"))
        result = run(layout, "youtube-stats", {})
        assert result.exit_code == 77 and "invalid_grant" in result.stderr
        assert "koda connect youtube" in result.stderr and "1//revoked" not in result.stderr


async def test_an_approved_video_is_published_once(settings: KodaSettings, bus: Bus, tmp_path: Path) -> None:
    with FakeGoogle(CLIENT, SECRET, REFRESH) as g:
        g.add_video("vid00000002", "raw upload 0412.mp4")
        g.add_video("vid00000003", "Old public one", privacy="public")
        from koda.shared.home import init_home
        init_home(settings)
        layout = HomeLayout(settings.expanded_home())
        layout.env.write_text("".join(f"{k}={v}\n" for k, v in google_env(g).items()))
        output(await run_async(layout, "youtube-ready", {}))
        ready = json.loads((layout.data / "videos" / "ready.json").read_text())["videos"]
        assert [v["video_id"] for v in ready] == ["vid00000002"]

        args = {"video_id": "vid00000002", "title": "I rebuilt my editor in a week",
                "description": "What changed and why.\n\n00:00 Intro", "tags": ["editor", "devlog"]}
        store = ApprovalStore(bus)
        async with serving(ActionsService(settings)):
            # Without an approval the actions service refuses to run it.
            refused = await ask(bus, "koda.actions.video.publish", ActionRequest(
                name="video.publish", idempotency_key="made-up", args=args), ActionResult)
            assert not refused.ok and "approval" in (refused.error or "")
            record = await store.propose(new_proposal("video-publish", "video-publish.m1", "video.publish",
                                                      args=args))
            inbox = bus.nc.new_inbox()
            sub = await bus.nc.subscribe(inbox, max_msgs=1)
            decision = await store.decide(record.id, True, "1234")  # as the gateway does on a click
            assert decision.changed
            # The approval's own request, once more with a reply inbox: it has run, or runs now, once.
            again = ActionRequest(name="video.publish", idempotency_key=f"approval:{record.id}", args=args,
                                  approval_id=record.id, run_id=record.run_id, reply_subject=inbox)
            await bus.publish("koda.actions.video.publish", again)
            result = ActionResult.from_bytes((await sub.next_msg(timeout=60)).data)
            assert result.ok, result.error
        video = g.videos["vid00000002"]
        assert video["status"]["privacyStatus"] == "public"
        assert video["snippet"]["title"] == args["title"] and video["snippet"]["tags"] == args["tags"]
        assert video["snippet"]["categoryId"] == "28"  # kept from the upload
        assert len(g.requests("PUT", "/youtube/v3/videos")) == 1
        assert "vid00000002" in (layout.data / "analytics" / "videos.json").read_text()
