"""The web console: in headless Chromium (Debian's, through Playwright) and with plain HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.messages import AdmissionRecord, RunLedgerEntry, RunRequest
from koda.shared.run_record import RunRecord
from koda.shared.settings import KodaSettings

from .conftest import CONSOLE_TOKEN, SECRET, Propose, RunningGateway
from .helpers import actions_published

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture
async def console(gw_settings: KodaSettings) -> AsyncIterator[str]:
    """A gateway without Discord (the console must work alone); yields the console's URL."""
    settings = gw_settings.model_copy(update={"discord_token": None})
    running = RunningGateway(settings)
    await running.start(wait_discord=False)
    try:
        yield f"http://127.0.0.1:{settings.console_listen_port()}"
    finally:
        await running.stop()


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="Debian's chromium is not installed (apt-get install chromium)")
async def test_log_in_see_a_pending_approval_approve_it_and_see_the_outcome(
        console: str, propose: Propose, bus: Bus, gw_settings: KodaSettings) -> None:
    from playwright.async_api import async_playwright

    draft = gw_settings.expanded_home() / "data" / "drafts" / "publish-video.m7" / "script.md"
    draft.parent.mkdir(parents=True)
    draft.write_text(f"Hello viewers. token={SECRET}\n")
    record = await propose(reason=f"Publish now; the key {SECRET} is set",
                           artifact="data/drafts/publish-video.m7/script.md")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            response = await page.goto(f"{console}/approvals")
            assert response is not None and response.status == 401
            await page.fill("input[name=token]", CONSOLE_TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{console}/")
            assert "Services" in await page.title()
            seen = [await page.content()]

            await page.click("nav >> text=Approvals")
            row = page.locator(f'.approval[data-id="{record.id}"]')
            assert await row.locator(".status").inner_text() == "pending"
            assert "Publish now" in await row.inner_text()
            seen.append(await page.content())
            await row.locator("a", has_text="script.md").click()
            assert "Hello viewers. token=[redacted]" in await page.inner_text("body")
            await page.goto(f"{console}/approvals")  # a fresh load, not the history cache
            row = page.locator(f'.approval[data-id="{record.id}"]')

            await row.locator("button[name=approve]").click()
            await page.wait_for_selector("p.flash")
            assert "approved" in await page.locator("p.flash").inner_text()
            row = page.locator(f'.approval[data-id="{record.id}"]')
            assert await row.locator(".status").inner_text() == "approved"
            assert "by console" in await row.inner_text()
            seen.append(await page.content())
            for other in ("/tasks", "/runs", "/events"):
                await page.goto(console + other)
                seen.append(await page.content())
        finally:
            await browser.close()
    stored = (await ApprovalStore(bus).get(record.id))[0]  # type: ignore[index]
    assert stored.status == "approved" and stored.decided_by == "console"
    assert len(await actions_published(bus, "video.publish")) == 1
    assert all(SECRET not in html for html in seen)
    assert "[redacted]" in seen[1]
    assert "approval.decided" in seen[-1] and "approval.requested" in seen[-1]  # the audit log


async def test_requests_without_the_token_or_from_another_site_are_refused(
        console: str, propose: Propose, bus: Bus) -> None:
    record = await propose()
    async with httpx.AsyncClient(base_url=console) as http:
        for path in ("/", "/tasks", "/runs", "/approvals"):
            assert (await http.get(path)).status_code == 401
        no_login = await http.post(f"/approvals/{record.id}/approve", data={"csrf": "x"})
        assert no_login.status_code == 401
        assert (await http.post("/login", data={"token": "wrong"})).status_code == 401
        assert (await http.get("/", headers={"Authorization": "Bearer wrong"})).status_code == 401

        logged_in = await http.post("/login", data={"token": CONSOLE_TOKEN})
        assert logged_in.status_code == 303 and "samesite=strict" in \
            logged_in.headers["set-cookie"].lower()
        assert (await http.get("/approvals")).status_code == 200
        # Logged in, but the form lacks the session's CSRF field: a forged cross-site post.
        forged = await http.post(f"/approvals/{record.id}/approve", data={"csrf": "guess"})
        assert forged.status_code == 403
        page = (await http.get("/approvals")).text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        cross = await http.post(f"/approvals/{record.id}/approve", data={"csrf": csrf},
                                headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
    assert (await ApprovalStore(bus).get(record.id))[0].status == "pending"  # type: ignore[index]
    assert await actions_published(bus, "video.publish") == []


async def test_tasks_page_triggers_pauses_and_resumes(
        console: str, bus: Bus, gw_settings: KodaSettings) -> None:
    home = gw_settings.expanded_home()
    await bus.kv["runs"].put("daily-post.1700000000000", RunLedgerEntry(
        run_id="daily-post.1700000000000", task="daily-post", status="done").to_bytes())
    (home / "data" / "runs" / "daily-post.1700000000000.json").write_text(RunRecord(
        run_id="daily-post.1700000000000", task="daily-post", trigger="cron", outcome="done",
        started_at=datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        finished_at=datetime(2026, 11, 20, 8, 31, tzinfo=UTC),
        result=f"posted with {SECRET}").model_dump_json())
    (home / "data" / "daily-logs").mkdir(parents=True, exist_ok=True)
    (home / "data" / "daily-logs" / "2026-11-20.md").write_text(
        "# 2026-11-20\n\n- 08:31 `daily-post.1700000000000` **daily-post**: done, 7 turns\n"
        "- 09:00 `other.1` **other**: done\n")
    drafts = home / "data" / "drafts" / "daily-post.1700000000000"
    drafts.mkdir(parents=True)
    (drafts / "post.md").write_text(f"Hello world. token={SECRET}\n")
    # The worker's last admission decision for the task, as it keeps it in the limits KV.
    await bus.kv["limits"].put("admission.daily-post", AdmissionRecord(
        task="daily-post", run_id="daily-post.1700000000001", priority="normal", decision="reduce",
        reason="normal task reduced to 8 turns: window 93% used", max_turns=8).to_bytes())
    async with httpx.AsyncClient(base_url=console,
                                 headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}) as http:
        tasks = (await http.get("/tasks")).text
        assert "publish-video" in tasks and "0 9 * * *" in tasks and "done" in tasks
        assert "priority · admission" in tasks and ">reduce<" in tasks
        assert "normal task reduced to 8 turns: window 93% used" in tasks
        run = await http.post("/tasks/daily-post/run")
        assert run.status_code == 303 and "queued" in run.headers["location"]
        assert (await http.post("/tasks/nope/run")).headers["location"].count("no%20task") == 1
        assert (await http.post("/tasks/daily-post/pause")).status_code == 303
        assert "by console-api" in (await http.get("/tasks")).text
        assert (await http.post("/tasks/daily-post/resume")).status_code == 303
        assert "by console-api" not in (await http.get("/tasks")).text

        detail = (await http.get("/runs/daily-post.1700000000000")).text
        assert "post.md" in detail and SECRET not in detail and "[redacted]" in detail
        assert "other.1" not in detail
        artifact = (await http.get("/runs/daily-post.1700000000000/artifacts/post.md")).text
        assert "Hello world" in artifact and SECRET not in artifact
        escape = await http.get("/runs/daily-post.1700000000000/artifacts/..%2F..%2F..%2F.env")
        assert escape.status_code == 404
    queued = await bus.js.get_last_msg("RUNS", "koda.runs.daily-post")
    request = RunRequest.from_bytes(queued.data)
    assert request.trigger == "manual" and request.run_id.startswith("daily-post.m")
    assert request.requested_by == "console-api"


async def test_console_still_serves_with_a_generated_token_when_none_is_set(
        gw_settings: KodaSettings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "koda.services.gateway")
    settings = gw_settings.model_copy(update={"discord_token": None, "console_token": None})
    running = RunningGateway(settings)
    service = await running.start(wait_discord=False)
    try:
        assert service.console is not None and not service.console.loaded  # idle: no web stack
        token_file = settings.expanded_state() / "console-token"
        assert token_file.stat().st_mode & 0o077 == 0
        url = f"http://127.0.0.1:{settings.console_listen_port()}"
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/")).status_code == 401
            token = token_file.read_text().strip()
            assert (await http.get("/", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            assert service.console.loaded
            await running.stop()  # with the client's keep-alive connection still open
    finally:
        await running.stop()
    off = [r for r in caplog.records if "Discord bot off" in r.getMessage()]
    assert len(off) == 1 and "KODA_DISCORD_TOKEN" in off[0].getMessage()
    assert token not in caplog.text


async def test_an_approver_edits_a_paused_call_from_the_console_and_the_run_is_woken(
        console: str, bus: Bus, gw_settings: KodaSettings) -> None:
    """`args` with approve replaces the agent's arguments: signed as edited, audited, and the
    paused run is queued again to resume with them."""
    from datetime import UTC, datetime, timedelta

    from koda.shared.approvals import genuine
    from koda.shared.messages import ApprovalRecord

    store = ApprovalStore(bus)
    record = await store.propose(ApprovalRecord(
        id="publish.m1.abcdef012345", task="publish", run_id="publish.m1",
        action="mcp__youtube__upload", args={"title": "hello"}, tool="mcp__youtube__upload",
        tool_input={"title": "hello"}, tool_use_id="toolu_01", session_id=str(
            "0" * 8 + "-0000-4000-8000-" + "0" * 12),
        expires_at=datetime.now(UTC) + timedelta(hours=1)))
    woken = await bus.js.pull_subscribe("koda.runs.publish", durable="console-edit-test",
                                        stream="RUNS")
    async with httpx.AsyncClient(base_url=console,
                                 headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}) as http:
        bad = await http.post(f"/approvals/{record.id}/approve", data={"args": "[1]"})
        assert bad.status_code == 400 and "JSON object" in bad.text
        ok = await http.post(f"/approvals/{record.id}/approve",
                             data={"args": json.dumps({"title": "a better title"}), "by": "terminal"})
        assert ok.status_code == 200, ok.text
    got = await store.get(record.id)
    assert got is not None
    decided = got[0]
    assert decided.args == {"title": "a better title"} and decided.original_args == {"title": "hello"}
    assert genuine(decided, gw_settings.approval_verify_key) and decided.woken
    assert not decided.dispatched  # a tool call is not an action: the resumed session runs it
    [msg] = await woken.fetch(1, timeout=5)
    request = RunRequest.model_validate_json(msg.data)
    assert (request.run_id, request.resume_approval) == ("publish.m1", record.id)
