"""One visit to a page for a job: its text, the selectors asked for, and a screenshot.

Everything read here is untrusted web content: it travels as data in a `ScrapeResult` (whose
`untrusted` is always true) and is never treated as an instruction by the runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koda.shared.messages import ScrapeRequest
from koda.shared.safe_write import write_file
from koda.shared.sites import Site

from .login import open_page

#: Text kept of a page: results travel in 1 MiB messages.
MAX_TEXT_CHARS = 200_000
MAX_FIELD_CHARS = 20_000


@dataclass
class PageData:
    """What a job read from a page, or `wall=True` when the site showed its login wall."""

    wall: bool
    url: str = ""
    text: str = ""
    extracted: dict[str, str] = field(default_factory=dict)
    screenshot: Path | None = None


def screenshot_path(directory: Path, site: str, job_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", job_id)[:100]
    return directory / f"{site}-{safe}.png"


async def read_page(context: Any, site_name: str, site: Site, request: ScrapeRequest,
                    screenshots: Path) -> PageData:
    """Open the job's URL (or the site's start page) in `context` and read what it asks for.

    The page is left to close with the caller's context: closing it here costs a round trip.
    """
    page = await context.new_page()
    visit = await open_page(page, request.url or site.start_url, site.login_wall)
    if visit.wall:
        return PageData(wall=True, url=visit.url)
    text = await page.inner_text("body")
    extracted = {}
    for name, selector in request.selectors.items():
        locator = page.locator(selector)
        extracted[name] = (await locator.first.inner_text()
                           if await locator.count() else "")[:MAX_FIELD_CHARS]
    shot = None
    if request.screenshot:
        shot = screenshot_path(screenshots, site_name, request.job_id)
        # data/screenshots is in the agent's reach: written without following links. The
        # folder is data/screenshots of a home.
        home = screenshots.parent.parent
        write_file(home, shot.relative_to(home).as_posix(), await page.screenshot(full_page=True))
    return PageData(wall=False, url=visit.url, text=text[:MAX_TEXT_CHARS],
                    extracted=extracted, screenshot=shot)
