"""The scraper against a real website whose session expires, with real Chromium: the login wall
is met, the session refreshed with the site's recipe, the job retried and answered; wrong
credentials escalate once and then fail fast until a person clears the site."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import Iterator

import pytest

from koda.services.scraper.service import ScraperService
from koda.shared.bus import Bus
from koda.shared.messages import ScrapeRequest, ScrapeResult
from koda.shared.settings import KodaSettings
from tests.scraper.helpers import ask, event_count, events, make_home, metric, serving
from tests.scraper.testsite import TestSite

EMAIL, PASSWORD = "ada@example.com", "correct-horse-battery"

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"),
                                reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def site() -> Iterator[TestSite]:
    with TestSite(EMAIL, PASSWORD) as running:
        yield running


def job(n: int, **fields: object) -> ScrapeRequest:
    return ScrapeRequest(site="members", job_id=f"job-{n}", **fields)  # type: ignore[arg-type]


async def test_expired_session_is_refreshed_and_the_job_retried(
        settings: KodaSettings, bus: Bus, site: TestSite) -> None:
    home = make_home(settings, {"SITE_EMAIL": EMAIL, "SITE_PASSWORD": PASSWORD},
                     {"sites.json": site.sites_json()})
    jar = home / "data" / "cookies" / "members.json"
    settings = settings.model_copy(update={"scraper_idle_close": 1.0})
    async with serving(ScraperService(settings)) as scraper:
        # No cookies yet: the wall, a login with the recipe, the retry.
        first = await ask(bus, "koda.scrape.members",
                          job(1, selectors={"title": "#title", "first": ".member"}, screenshot=True),
                          ScrapeResult)
        assert first.ok, first.error
        assert "Alan Turing" in first.text
        assert first.extracted == {"title": "Members of the community", "first": "Ada Lovelace"}
        assert first.untrusted is True
        assert EMAIL not in first.text and "Signed in as [redacted]" in first.text
        assert first.screenshot_path
        assert await asyncio.to_thread(os.path.getsize, first.screenshot_path) > 1000
        assert stat.S_IMODE(jar.stat().st_mode) == 0o600
        assert site.logins == 1
        cookies_before = jar.read_text()

        # The saved cookies are reused: no second login.
        second = await ask(bus, "koda.scrape.members", job(2), ScrapeResult)
        assert second.ok and site.logins == 1

        # The site ends every session (cookies rotated): wall, refresh, retry, success.
        site.expire_sessions()
        third = await ask(bus, "koda.scrape.members", job(3), ScrapeResult)
        assert third.ok, third.error
        assert "Ada Lovelace" in third.text
        assert site.logins == 2
        assert jar.read_text() != cookies_before  # the new session is on disk
        assert stat.S_IMODE(jar.stat().st_mode) == 0o600
        assert PASSWORD not in jar.read_text()

        assert metric(scraper, "koda_scraper_refreshes_total", site="members", outcome="ok") == 2
        assert metric(scraper, "koda_scraper_jobs_total", site="members", outcome="ok") == 1
        assert metric(scraper, "koda_scraper_jobs_total", site="members",
                      outcome="ok_after_refresh") == 2
        age = metric(scraper, "koda_scraper_cookie_age_seconds", site="members")
        assert age is not None and 0 <= age < 60
        # A job may not point the site's session (or the browser) anywhere else.
        for url in (f"file://{home}/.env", "http://other.example/members"):
            refused = await ask(bus, "koda.scrape.members", job(4, url=url), ScrapeResult)
            assert not refused.ok and "only open http(s) pages of its own site" in (refused.error or "")

        # Idle, the browser is closed again (the idle stack's memory budget has no room for it).
        for _ in range(100):
            if not scraper.browser.running:
                break
            await asyncio.sleep(0.1)
        assert not scraper.browser.running
    assert await event_count(bus, "scrape.done") == 5
    assert await event_count(bus, "scrape.needs_human") == 0


async def test_wrong_credentials_escalate_once_then_fail_fast_until_cleared(
        settings: KodaSettings, bus: Bus, site: TestSite) -> None:
    home = make_home(settings, {"SITE_EMAIL": EMAIL, "SITE_PASSWORD": "an-old-password"},
                     {"sites.json": site.sites_json()})
    async with serving(ScraperService(settings)) as scraper:
        first = await ask(bus, "koda.scrape.members", job(1), ScrapeResult)
        assert not first.ok and first.needs_human and "refused" in (first.error or "")
        assert "an-old-password" not in (first.error or "")
        for n in (2, 3):
            later = await ask(bus, "koda.scrape.members", job(n), ScrapeResult)
            assert not later.ok and "koda site clear members" in (later.error or "")
        # An explicit refresh (what the actions service sends) does not try again either.
        again = await ask(bus, "koda.scrape.members", job(4, refresh=True), ScrapeResult)
        assert not again.ok and "needs a person" in (again.error or "")
        assert site.login_attempts == 1  # one escalation, not a loop of failed logins
        assert metric(scraper, "koda_scraper_site_needs_human", site="members") == 1
        assert metric(scraper, "koda_scraper_jobs_total", site="members", outcome="needs_human") == 3

    alerts = await events(bus, "scrape.needs_human")
    assert len(alerts) == 1
    assert alerts[0]["data"]["site"] == "members" and "an-old-password" not in str(alerts[0])

    # The flag outlives the service: a restarted scraper still fails fast, trying nothing.
    async with serving(ScraperService(settings)):
        restarted = await ask(bus, "koda.scrape.members", job(5), ScrapeResult)
        assert not restarted.ok and site.login_attempts == 1

        # A person fixes the password and clears the site with the real command.
        (home / ".env").write_text(f"SITE_EMAIL={EMAIL}\nSITE_PASSWORD={PASSWORD}\n")
        assert (await koda(settings, "site", "list")).startswith("members: needs a person since")
        assert (await koda(settings, "site", "clear", "members")).startswith("members: cleared")
        assert await koda(settings, "site", "list") == "no site needs a person\n"

        fixed = await ask(bus, "koda.scrape.members", job(6), ScrapeResult)
        assert fixed.ok, fixed.error
        assert site.logins == 1
    assert await event_count(bus, "scrape.needs_human") == 1


async def koda(settings: KodaSettings, *args: str) -> str:
    """Run the real `koda` command against this test's home and NATS; its stdout."""
    env = {**os.environ, "KODA_HOME": str(settings.home), "KODA_NATS_URL": settings.nats_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "koda", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    return out.decode()
