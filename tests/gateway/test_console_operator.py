"""The operator's console in Chromium: every page on a seeded week, a run timeline that follows
a running run without a reload, cancel and retry, task enable/disable, a broken tasks.json,
and phone width."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from koda.shared.bus import Bus
from koda.shared.messages import Event, RunRequest
from koda.shared.settings import KodaSettings

from .conftest import CONSOLE_TOKEN, SECRET
from .console_seed import Seeded, heartbeats, seed
from .test_console import ARGS, CHROMIUM, console  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture
def gw_settings(gw_settings: KodaSettings) -> KodaSettings:
    return gw_settings.model_copy(update={"spend_cap_day_usd": 2.0, "spend_cap_month_usd": 40.0})


@pytest.fixture
async def seeded(gw_settings: KodaSettings, bus: Bus) -> Seeded:
    done = await seed(gw_settings, bus, SECRET)
    await heartbeats(bus, gw_settings)
    return done


@pytest.fixture
async def page(console: str) -> AsyncIterator[Any]:  # noqa: F811
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            tab = await browser.new_page()
            await tab.goto(f"{console}/login")
            await tab.fill("input[name=token]", CONSOLE_TOKEN)
            await tab.click("button[type=submit]")
            await tab.wait_for_url(f"{console}/")
            yield tab
        finally:
            await browser.close()


async def test_every_page_shows_the_seeded_week(
        console: str, seeded: Seeded, page: Any, bus: Bus, gw_settings: KodaSettings) -> None:  # noqa: F811
    await heartbeats(bus, gw_settings)  # fresh: the test bucket's TTL is a few seconds
    await page.reload()
    body = await page.inner_text("main")
    assert "nats" in body and "watchdog" in body and "1d 2h" in body  # uptime in words
    await page.click("nav >> text=Tasks")
    body = await page.inner_text("main")
    assert "at 08:30 on Monday to Friday (Europe/Paris)" in body
    assert "America/New_York" in body
    await page.click("nav >> text=Runs")
    first = page.locator("table tr").nth(1)
    assert "running" in await first.inner_text() and seeded.live_run in await first.inner_text()
    assert await page.locator("td .badge.bad").count() >= 1  # a failed run, in red
    await page.click("nav >> text=Costs")
    assert await page.locator("svg rect").count() == 30
    assert "daily cap $2.00" in await page.locator("svg").first.text_content()
    assert "of the $40.00 cap" in await page.inner_text(".tiles")
    assert "weekly-video" in await page.inner_text(".hbars")
    await page.click("nav >> text=Approvals")
    cards = page.locator(".approval")
    assert await cards.first.get_attribute("data-id") == seeded.pending_approval  # pending first
    failed = page.locator(f'.approval[data-id="{seeded.failed_approval}"]')
    assert "failed: no script in scripts/manifest.json lists action 'video.publish'" in \
        await failed.inner_text()
    draft = cards.first.locator(".draft")  # the draft, rendered inline
    assert await draft.locator("h3").inner_text() == "Shipping beats polishing"
    assert await draft.locator("ol li").all_inner_texts() == ["Cut scope early.", "Ship on Friday."]
    assert "[redacted]" in await draft.inner_text() and SECRET not in await draft.inner_html()
    await cards.first.locator("a", has_text="run ").click()
    await page.wait_for_url(f"**/runs/{seeded.done_run}")
    assert "Approvals raised" in await page.inner_text("main")
    await page.click("nav >> text=Events")
    assert "action.done" in await page.inner_text("main")


async def test_the_run_page_follows_a_running_run_without_reloading(
        console: str, seeded: Seeded, page: Any, gw_settings: KodaSettings) -> None:  # noqa: F811
    await page.goto(f"{console}/runs/{seeded.live_run}")
    assert "Outlining the video" in await page.inner_text("#timeline")
    await page.evaluate("window.__sameDocument = true")
    transcript = gw_settings.expanded_state() / "transcripts" / f"{seeded.live_run}.jsonl"
    with transcript.open("a") as f:
        f.write(json.dumps({"at": datetime.now(UTC).isoformat(), "kind": "text", "turn": 2,
                            "text": "A second thought arrives live"}) + "\n")
    await page.wait_for_selector("text=A second thought arrives live", timeout=15_000)
    assert await page.evaluate("window.__sameDocument === true")  # no reload happened


async def test_cancel_a_running_run_and_retry_a_failed_one(
        console: str, seeded: Seeded, page: Any, bus: Bus) -> None:  # noqa: F811
    asked: asyncio.Queue[Event] = asyncio.Queue()

    async def on(msg: Any) -> None:
        await asked.put(Event.from_bytes(msg.data))

    await bus.nc.subscribe("koda.events.run.cancel_requested", cb=on)
    await page.goto(f"{console}/runs/{seeded.live_run}")
    await page.click("button[name=cancel]")
    await page.wait_for_selector("p.flash")
    event = await asyncio.wait_for(asked.get(), 10)
    assert event.run_id == seeded.live_run and event.data["requested_by"] == "console"

    await page.goto(f"{console}/runs/{seeded.failed_run}")
    assert await page.locator("button[name=cancel]").count() == 0
    await page.click("button[name=retry]")
    await page.wait_for_selector("p.flash")
    assert "retrying analytics-pull" in await page.inner_text("p.flash")
    queued = RunRequest.from_bytes((await bus.js.get_last_msg("RUNS", "koda.runs.analytics-pull")).data)
    assert queued.trigger == "retry" and queued.requested_by == "console"
    assert f"/runs/{queued.run_id}?" in page.url and "queued" in await page.inner_text(".tiles")


async def test_disable_and_enable_a_task_and_see_a_broken_file_with_the_last_good_schedule(
        console: str, seeded: Seeded, page: Any, gw_settings: KodaSettings) -> None:  # noqa: F811
    tasks_file = gw_settings.expanded_home() / "tasks.json"
    await page.goto(f"{console}/tasks")
    row = page.locator("tr", has_text="weekly-video")
    await row.locator("button[name=disable]").click()
    await page.wait_for_selector("p.flash")
    assert json.loads(tasks_file.read_text())["tasks"][1]["enabled"] is False
    row = page.locator("tr", has_text="weekly-video")
    assert "disabled" in await row.locator(".badge").first.inner_text()
    await row.locator("button[name=enable]").click()
    await page.wait_for_selector("p.flash")
    assert json.loads(tasks_file.read_text())["tasks"][1]["enabled"] is True

    tasks_file.write_text('{"timezone": "UTC", "tasks": [{"id": "x", "cron": "61 * * * *"}]}')
    await page.goto(f"{console}/tasks")
    body = await page.inner_text("main")
    assert "tasks.json has problems" in body and "cron" in body
    assert "last good version" in body and "daily-post" in body  # the schedule still in force


@pytest.mark.parametrize("path", ["/", "/tasks", "/runs", "/approvals", "/costs", "/events", "run"])
async def test_pages_fit_a_phone(console: str, seeded: Seeded, page: Any, path: str) -> None:  # noqa: F811
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(console + (f"/runs/{seeded.done_run}" if path == "run" else path))
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"{path} is {width}px wide at phone width"


async def test_services_page_shows_a_rate_limit_pause_and_config_problems(
        console: str, seeded: Seeded, bus: Bus, gw_settings: KodaSettings) -> None:  # noqa: F811
    import httpx

    from koda.shared.messages import LimitsRecord

    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=50)
    await bus.kv["limits"].put("state", LimitsRecord(
        pause_until=until, pause_reason="rate limited (429 from the API)").to_bytes())
    tasks = gw_settings.expanded_home() / "tasks.json"
    data = json.loads(tasks.read_text())
    data["tasks"][0]["skill"] = "no-such-skill"
    tasks.write_text(json.dumps(data, indent=2))
    async with httpx.AsyncClient(base_url=console,
                                 headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}) as http:
        page = (await http.get("/")).text
    assert f"until {until:%H:%M} UTC" in page and "429 from the API" in page
    assert "skill &#x27;no-such-skill&#x27; not found" in page or "no-such-skill" in page
    assert "config problems" in page
