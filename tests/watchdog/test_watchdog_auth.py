"""An auth failure the inline fix could not repair: the watchdog refreshes the site's cookies
through the real scraper (real Chromium, a real site whose sessions expire) and says so."""

from __future__ import annotations

import asyncio
import os

import pytest

from koda.services.actions.service import ActionsService
from koda.services.scraper.service import ScraperService
from koda.services.watchdog.service import WatchdogService
from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ActionResult
from koda.shared.settings import KodaSettings
from tests.actions.test_actions_auth_retry import EMAIL, MEMBERS_SYNC, PASSWORD
from tests.scraper.helpers import ask, events, make_home, serving
from tests.scraper.testsite import TestSite

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"),
                                reason="needs Debian's chromium (apt-get install chromium)")


async def test_auth_failure_gets_a_cookie_refresh_and_the_report_says_so(
        settings: KodaSettings, bus: Bus) -> None:
    settings = settings.model_copy(update={"action_refresh_timeout": 1.0})
    with TestSite(EMAIL, PASSWORD) as site:
        manifest = {"scripts": [{"name": "members-sync", "command": ["python3", "members_sync.py"],
                                 "site": "members"}]}
        home = make_home(settings, {"SITE_EMAIL": EMAIL, "SITE_PASSWORD": PASSWORD},
                         {"scripts/manifest.json": manifest, "sites.json": site.sites_json()})
        (home / "scripts" / "members_sync.py").write_text(MEMBERS_SYNC)
        request = ActionRequest(name="script.members-sync", idempotency_key="sync-1",
                                args={"url": site.url, "style": "exit"})
        async with serving(WatchdogService(settings)), serving(ActionsService(settings)):
            # The scraper is down: the actions service's own refresh gets no answer in time.
            failed = await ask(bus, "koda.actions.script.members-sync", request, ActionResult)
            assert not failed.ok and failed.exit_code == 77
            assert site.logins == 0
            # The watchdog has asked for a refresh; the scraper comes back and serves it.
            async with serving(ScraperService(settings)):
                for _ in range(400):
                    if await events(bus, "incident.resolved"):
                        break
                    await asyncio.sleep(0.1)
        report = (await events(bus, "incident.resolved"))[0]["data"]
        assert report["incident"] == "site:members" and report["class"] == "auth"
        assert report["outcome"] == "healed" and report["holds"] is True
        assert any("cookie refresh for members: ok" in step for step in report["actions"])
        assert site.logins >= 1 and (home / "data/cookies/members.json").exists()
        assert not await events(bus, "alert")
