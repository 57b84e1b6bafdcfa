"""Scraper: Playwright browser jobs per site, with cookie jars that refresh themselves.

Consumes SCRAPE (`koda.scrape.<site>`). A job opens the page with the site's saved cookies; on
the login wall it logs in again with the site's recipe, saves the new cookies (0600) and tries
once more. If the login fails, or the retry still meets the wall, the site is flagged as needing
a person: one `scrape.needs_human` event, and every later job for the site fails fast until the
flag is cleared (`koda site clear <site>`). `refresh: true` asks for the login alone (the actions
service sends it when a script's cookies are rejected). Results go to `reply_subject`, always
marked untrusted, with every `.env` value redacted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from koda.shared.bus import Delivery
from koda.shared.errors import ConfigError
from koda.shared.events import NeedsHuman, ScrapeDone
from koda.shared.home import HomeLayout
from koda.shared.messages import ScrapeRequest, ScrapeResult, SiteNeedsHuman
from koda.shared.secrets import read_env_file, redactor_for_home
from koda.shared.service import Service
from koda.shared.sites import Site, SitesFile, load_sites

from .browser import Browser
from .cookies import CookieJar
from .flags import SiteFlags
from .login import LoginFailed, log_in
from .page import read_page

log = logging.getLogger(__name__)
CONCURRENCY = 2
MAX_RESULT_BYTES = 900_000  # a reply is one NATS message (1 MiB at most)
HOUSEKEEPING_EVERY = 5.0  # at most; sooner when the browser's idle limit is shorter


class ScraperService(Service):
    name = "scraper"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layout = HomeLayout(self.settings.expanded_home())
        self.browser = Browser(self.settings.chromium_path, self.settings.scraper_idle_close)
        self.jobs_total = Counter("koda_scraper_jobs_total", "Browser jobs by site and outcome",
                                  ["site", "outcome"], registry=self.registry)
        self.refreshes_total = Counter("koda_scraper_refreshes_total", "Logins with a recipe",
                                       ["site", "outcome"], registry=self.registry)
        self.cookie_age = Gauge("koda_scraper_cookie_age_seconds", "Seconds since cookies saved",
                                ["site"], registry=self.registry)
        self.needs_human = Gauge("koda_scraper_site_needs_human", "1 while a site needs a person",
                                 ["site"], registry=self.registry)
        self._site_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._watched: set[str] = set()

    async def setup(self) -> None:
        self.flags = SiteFlags(self.bus.kv["scraper"])
        self.stack.push_async_callback(self.browser.close)
        try:
            self._watch(load_sites(self.layout.sites))
        except ConfigError as exc:
            log.error("sites.json is invalid: %s", exc)
        await self._housekeeping()

    async def run(self) -> None:
        keeper = asyncio.create_task(self._keep_house())
        try:
            await self.bus.consume("SCRAPE", ScrapeRequest, self.handle, stop=self.stopping,
                                   in_flight=self.in_flight, concurrency=CONCURRENCY, ack_wait=300)
        finally:
            keeper.cancel()

    def health_detail(self) -> dict[str, Any]:
        return {"browser_running": self.browser.running}

    # --- one job ----------------------------------------------------------------------------

    async def handle(self, delivery: Delivery[ScrapeRequest]) -> None:
        request = delivery.message
        started = time.monotonic()
        result, outcome = await self._job(request)
        redact = redactor_for_home(self.layout.root)
        result = result.model_copy(update={
            "needs_human": outcome in ("needs_human", "login_failed"),
            "text": redact(result.text),
            "extracted": {k: redact(v) for k, v in result.extracted.items()},
            "error": redact(result.error) if result.error else None,
        })
        result = fit(result)
        self.jobs_total.labels(request.site, outcome).inc()
        if request.reply_subject:
            try:
                await self.bus.nc.publish(request.reply_subject, result.to_bytes())
            except Exception:
                log.warning("could not reply", extra={"site": request.site}, exc_info=True)
        await self.bus.emit(self.bus.event(
            "scrape.done", f"{request.site} {request.job_id}: {outcome}",
            severity="info" if result.ok else "warning",
            data=ScrapeDone(site=request.site, job_id=request.job_id, ok=result.ok,
                            outcome=outcome, refresh=request.refresh, error=result.error,
                            needs_human=result.needs_human, screenshot=result.screenshot_path,
                            duration_s=round(time.monotonic() - started, 3))))

    async def _job(self, request: ScrapeRequest) -> tuple[ScrapeResult, str]:
        def fail(error: str) -> ScrapeResult:
            return ScrapeResult(site=request.site, job_id=request.job_id, ok=False, error=error)

        try:
            sites = load_sites(self.layout.sites)
        except ConfigError as exc:
            return fail(f"sites.json is invalid: {exc}"), "config_error"
        self._watch(sites)
        site = sites.sites.get(request.site)
        if site is None:
            known = ", ".join(sites.sites) or "none"
            return fail(f"no site {request.site!r} in {self.layout.sites} (known: {known})"), "unknown"
        if request.url and not same_site(request.url, site):
            return fail(f"{request.url!r} is not on {request.site} ({site.start_url}); a job may "
                        "only open http(s) pages of its own site"), "refused"
        flag = await self.flags.get(request.site)
        if flag is not None:
            return fail(_needs_human_text(flag)), "needs_human"
        async with self._site_locks[request.site]:
            try:
                if request.refresh:
                    error = await self._refresh(request, site)
                    return (fail(error), "login_failed") if error else (
                        ScrapeResult(site=request.site, job_id=request.job_id, ok=True,
                                     text="logged in; cookies saved"), "refreshed")
                return await self._scrape(request, site)
            except Exception as exc:  # a browser or network error: this job fails, the site is fine
                log.warning("browser job failed", extra={"site": request.site}, exc_info=True)
                return fail(f"browser error: {type(exc).__name__}: {_first_line(exc)}"), "failed"

    async def _scrape(self, request: ScrapeRequest, site: Site) -> tuple[ScrapeResult, str]:
        jar = CookieJar(self.layout.cookies, request.site)
        screenshots = self.layout.screenshots
        async with self.browser.context(jar.load()) as context:
            data = await read_page(context, request.site, site, request, screenshots)
        refreshed = False
        if data.wall:
            log.info("login wall: refreshing", extra={"site": request.site, "url": data.url})
            error = await self._refresh(request, site)
            if error:
                return self._failed(request, error), "login_failed"
            refreshed = True
            async with self.browser.context(jar.load()) as context:
                data = await read_page(context, request.site, site, request, screenshots)
            if data.wall:
                error = "still at the login wall right after a successful login"
                await self._escalate(request, error)
                return self._failed(request, error), "login_failed"
        result = ScrapeResult(site=request.site, job_id=request.job_id, ok=True, text=data.text,
                              extracted=data.extracted,
                              screenshot_path=str(data.screenshot) if data.screenshot else None)
        return result, "ok_after_refresh" if refreshed else "ok"

    async def _refresh(self, request: ScrapeRequest, site: Site) -> str | None:
        """Log in afresh with the recipe and save the cookies; the error text, or None if done.

        A refused login flags the site for a person; a browser or network error does not (the
        next job may well succeed).
        """
        env = read_env_file(self.layout.env)
        try:
            async with self.browser.context(None) as context:
                await log_in(context, site, env)
                CookieJar(self.layout.cookies, request.site).save(await context.storage_state())
        except LoginFailed as exc:
            self.refreshes_total.labels(request.site, "failed").inc()
            await self._escalate(request, str(exc))
            return f"login failed: {exc}"
        except Exception:
            self.refreshes_total.labels(request.site, "error").inc()
            raise
        self.refreshes_total.labels(request.site, "ok").inc()
        log.info("logged in; cookies saved", extra={"site": request.site})
        return None

    async def _escalate(self, request: ScrapeRequest, reason: str) -> None:
        redact = redactor_for_home(self.layout.root)
        flag = SiteNeedsHuman(site=request.site, reason=redact(reason), job_id=request.job_id)
        self.needs_human.labels(request.site).set(1)
        if await self.flags.mark(flag):
            log.error("site needs a person", extra={"site": request.site, "reason": flag.reason})
            await self.bus.emit(self.bus.event(
                "scrape.needs_human",
                f"{request.site}: the login failed and needs a person. {flag.reason}. "
                f"Fix it, then run `koda site clear {request.site}`.",
                severity="error",
                data=NeedsHuman(site=request.site, reason=flag.reason, job_id=request.job_id,
                                clear_with=f"koda site clear {request.site}")))

    def _failed(self, request: ScrapeRequest, error: str) -> ScrapeResult:
        return ScrapeResult(site=request.site, job_id=request.job_id, ok=False, error=error)

    # --- metrics and the idle browser ----------------------------------------------------------

    def _watch(self, sites: SitesFile) -> None:
        """Export cookie age and the needs-human flag for every site in sites.json."""
        for name in sites.sites:
            if name not in self._watched:
                self._watched.add(name)
                jar = CookieJar(self.layout.cookies, name)
                self.cookie_age.labels(name).set_function(jar.age_seconds)
                self.needs_human.labels(name).set(0)

    async def _housekeeping(self) -> None:
        flagged = await self.flags.flagged()
        for name in self._watched | set(flagged):
            self.needs_human.labels(name).set(1 if name in flagged else 0)
        await self.browser.close_if_idle()

    async def _keep_house(self) -> None:
        every = min(HOUSEKEEPING_EVERY, max(0.5, self.settings.scraper_idle_close / 2))
        while True:
            await asyncio.sleep(every)
            try:
                await self._housekeeping()
            except Exception:
                log.warning("housekeeping failed", exc_info=True)


def fit(result: ScrapeResult, limit: int = MAX_RESULT_BYTES) -> ScrapeResult:
    """Cut the page text, then the extracted fields, until the reply fits in one message."""
    while len(result.to_bytes()) > limit:
        if len(result.text) > 1000:
            result = result.model_copy(update={"text": result.text[: len(result.text) // 2]
                                               + "\n[... cut to fit one message ...]"})
        else:
            longest = max(result.extracted, key=lambda k: len(result.extracted[k]), default=None)
            if longest is None or len(result.extracted[longest]) <= 1000:
                return result.model_copy(update={"text": "", "extracted": {},
                                                 "error": "the page's content is too large to send"})
            cut = result.extracted[longest]
            result = result.model_copy(update={"extracted": {
                **result.extracted, longest: cut[: len(cut) // 2] + " [... cut ...]"}})
    return result


def same_site(url: str, site: Site) -> bool:
    """An http(s) URL on the host of the site's start page (or a subdomain of it).

    A job carries the site's cookies, and its text goes to the model: a `file://` URL would read
    the home (cookie jars included), another host would be handed our session.
    """
    parts, start = urlsplit(url), urlsplit(site.start_url)
    host, home = (parts.hostname or "").lower(), (start.hostname or "").lower()
    return parts.scheme in ("http", "https") and bool(home) and (
        host == home or host.endswith("." + home))


def _needs_human_text(flag: SiteNeedsHuman) -> str:
    return (f"{flag.site} needs a person since {flag.at:%Y-%m-%d %H:%M} UTC ({flag.reason}); "
            f"nothing was tried. Fix the login, then run `koda site clear {flag.site}`.")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


SERVICE = ScraperService
