"""members sync: the actions service runs the script; its rejected cookies get the real scraper
(real Chromium) to log in through the site's recipe; the members are upserted into Airtable on
the key field, ten a request, within five requests a second, once however often it runs."""

from __future__ import annotations

import json
import os

import pytest

from koda.services.actions.service import ActionsService
from koda.services.scraper.service import ScraperService
from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ActionResult
from koda.shared.settings import KodaSettings
from tests.fakes.airtable import FakeAirtable
from tests.fakes.community import FakeCommunity, member_list
from tests.scraper.helpers import ask, events, make_home, serving

EMAIL, PASSWORD = "creator@example.com", "community-pass-42"
TOKEN, BASE = "patAbC123.secretpart", "appKoda0000000001"

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"),
                                reason="needs Debian's chromium (apt-get install chromium)")


def home_env(site: FakeCommunity, airtable: FakeAirtable) -> dict[str, str]:
    return {"SKOOL_EMAIL": EMAIL, "SKOOL_PASSWORD": PASSWORD, "AIRTABLE_TOKEN": TOKEN,
            "AIRTABLE_BASE_ID": BASE, "AIRTABLE_API_URL": airtable.url,
            "COMMUNITY_MEMBERS_URL": f"{site.url}/members", "AIRTABLE_RATE_LIMIT_WAIT": "1"}


def sites_json(site: FakeCommunity) -> dict[str, object]:
    sites = site.sites_json("skool")
    recipe = sites["sites"]["skool"]["login"]["recipe"]  # type: ignore[index]
    recipe["fields"] = {"input[name=email]": "SKOOL_EMAIL", "input[name=password]": "SKOOL_PASSWORD"}
    return sites


async def test_members_reach_airtable_through_a_cookie_refresh(settings: KodaSettings, bus: Bus) -> None:
    members = member_list(63)  # seven requests: more than one second's worth
    with FakeCommunity(EMAIL, PASSWORD, members) as site, FakeAirtable(TOKEN, BASE, "Members") as airtable:
        home = make_home(settings, home_env(site, airtable), {"sites.json": sites_json(site)})

        def sync(key: str) -> ActionRequest:
            return ActionRequest(name="script.sync-members", idempotency_key=key)

        async with serving(ScraperService(settings)), serving(ActionsService(settings)):
            # No cookies yet: the page redirects to the login form, exit 77, the scraper logs
            # in with the recipe, and the one retry syncs.
            first = await ask(bus, "koda.actions.script.sync-members", sync("m1"), ActionResult)
            assert first.ok, first.error
            assert json.loads(first.output.strip().splitlines()[-1])["created"] == 63
            assert site.logins == 1
            rows = airtable.rows_by("Email")
            assert set(rows) == {m["email"] for m in members}
            assert rows["member07@example.org"] == {"Name": "Member 07", "Email": "member07@example.org",
                                                    "Joined": "2026-11-08"}
            upserts = [e.request for e in airtable.exchanges if e.reply.status == 200]
            assert [len(r.json()["records"]) for r in upserts] == [10] * 6 + [3]
            assert {tuple(r.json()["performUpsert"]["fieldsToMergeOn"]) for r in upserts} == {("Email",)}
            assert airtable.rate_limited == 0  # paced: never more than five requests a second

            # The site rotates its sessions and two people joined: a refresh, then only updates
            # for the 63 already there.
            site.expire_sessions()
            site.set_members([*members, *member_list(65)[63:]])
            second = await ask(bus, "koda.actions.script.sync-members", sync("m2"), ActionResult)
            assert second.ok, second.error
            counts = json.loads(second.output.strip().splitlines()[-1])
            assert (counts["created"], counts["updated"]) == (2, 63)
            assert len(airtable.rows) == 65 and site.logins == 2

            # Someone else spends the base's rate limit: a 429, a wait, the same batch again.
            airtable.exhaust()
            third = await ask(bus, "koda.actions.script.sync-members", sync("m3"), ActionResult)
            assert third.ok, third.error
            assert airtable.rate_limited >= 1 and len(airtable.rows) == 65

        stats = json.loads((home / "data" / "analytics" / "members.json").read_text())
        assert stats["count"] == 65 and stats["history"][-1]["count"] == 65
        done = {e["data"]["idempotency_key"]: e["data"] for e in await events(bus, "action.done")}
        assert done["m1"]["auth_retry"] and done["m2"]["auth_retry"] and not done["m3"]["auth_retry"]
        assert TOKEN not in first.model_dump_json() + second.model_dump_json()
