"""A script whose cookies are rejected gets its site's login refreshed by the real scraper
(real Chromium, a real website whose session expires) and exactly one retry."""

from __future__ import annotations

import os

import pytest

from koda.services.actions.service import ActionsService
from koda.services.scraper.service import ScraperService
from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ActionResult
from koda.shared.settings import KodaSettings
from tests.scraper.helpers import ask, events, make_home, serving
from tests.scraper.testsite import TestSite

EMAIL, PASSWORD = "grace@example.com", "right-password-42"

#: Calls the site's API with the cookies the scraper saved; a rejected session is reported the
#: two ways the actions service recognises: exit code 77, or a known auth error in the output.
MEMBERS_SYNC = """
import json, os, sys, urllib.error, urllib.request
args = json.load(sys.stdin)
with open(os.path.join(os.environ["KODA_DATA"], "sync.log"), "a") as f:
    f.write("run\\n")
try:
    jar = json.load(open(os.environ["KODA_COOKIES"]))
except OSError:
    jar = {"cookies": []}
cookie = "; ".join(f"{c['name']}={c['value']}" for c in jar["cookies"])
req = urllib.request.Request(args["url"] + "/api/members", headers={"Cookie": cookie})
try:
    print(urllib.request.urlopen(req).read().decode())
except urllib.error.HTTPError as exc:
    print(exc.read().decode(), file=sys.stderr)
    sys.exit(77 if args.get("style") == "exit" else 1)
"""

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"),
                                reason="needs Debian's chromium (apt-get install chromium)")


async def test_rejected_cookies_are_refreshed_and_the_script_retried_once(
        settings: KodaSettings, bus: Bus) -> None:
    with TestSite(EMAIL, PASSWORD) as site:
        manifest = {"scripts": [{"name": "members-sync", "command": ["python3", "members_sync.py"],
                                 "site": "members"}]}
        home = make_home(settings, {"SITE_EMAIL": EMAIL, "SITE_PASSWORD": PASSWORD},
                         {"scripts/manifest.json": manifest, "sites.json": site.sites_json()})
        (home / "scripts" / "members_sync.py").write_text(MEMBERS_SYNC)
        runs = home / "data" / "sync.log"

        def sync(key: str, style: str) -> ActionRequest:
            return ActionRequest(name="script.members-sync", idempotency_key=key,
                                 args={"url": site.url, "style": style})

        async with serving(ScraperService(settings)), serving(ActionsService(settings)):
            # No cookies yet: exit 77, a refresh through the scraper, one retry that works.
            first = await ask(bus, "koda.actions.script.members-sync", sync("a", "exit"), ActionResult)
            assert first.ok, first.error
            assert "Ada Lovelace" in first.output
            assert len(runs.read_text().splitlines()) == 2 and site.logins == 1

            # The site rotates its sessions; this time the script only prints a known auth error.
            site.expire_sessions()
            second = await ask(bus, "koda.actions.script.members-sync", sync("b", "print"),
                               ActionResult)
            assert second.ok, second.error
            assert len(runs.read_text().splitlines()) == 4 and site.logins == 2

            # Wrong credentials: the refresh fails, the script is not retried, no loop.
            (home / ".env").write_text(f"SITE_EMAIL={EMAIL}\nSITE_PASSWORD=stale-password-1\n")
            site.expire_sessions()
            attempts = site.login_attempts
            third = await ask(bus, "koda.actions.script.members-sync", sync("c", "exit"), ActionResult)
            assert not third.ok and third.exit_code == 77
            assert "refreshing members's login failed" in (third.error or "")
            assert "stale-password-1" not in third.model_dump_json()
            assert len(runs.read_text().splitlines()) == 5
            fourth = await ask(bus, "koda.actions.script.members-sync", sync("d", "exit"), ActionResult)
            assert not fourth.ok and "koda site clear members" in (fourth.error or "")
            assert site.login_attempts == attempts + 1  # one failed login in all

        done = {e["data"]["idempotency_key"]: e["data"] for e in await events(bus, "action.done")}
        assert done["a"]["auth_retry"] and done["b"]["auth_retry"]
        assert done["c"]["outcome"] == "auth_failed" and not done["c"]["auth_retry"]
        # The watchdog reads these: the site is named, and a person is already needed.
        assert done["c"]["site"] == "members" and done["c"]["needs_human"]
        assert len(await events(bus, "scrape.needs_human")) == 1
