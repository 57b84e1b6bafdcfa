"""Recognising a login wall, and logging in again with a site's recipe.

Credentials come from the home's `.env` by the names the recipe gives, go straight into the
form, and appear in nothing this module returns or raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from koda.shared.errors import KodaError
from koda.shared.sites import LoginWall, Site

NAV_TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class Visit:
    """Where opening a URL ended: the final URL, its HTTP status, and whether it is a wall."""

    url: str
    status: int | None
    wall: bool


@dataclass
class LoginFailed(KodaError):
    """The recipe could not log in; `reason` names fields and .env names, never values."""

    reason: str

    def __str__(self) -> str:
        return self.reason


async def is_wall(page: Any, status: int | None, wall: LoginWall) -> bool:
    has_selector = bool(wall.selector) and await page.locator(wall.selector).count() > 0
    return wall.matches(page.url, status, has_selector)


async def open_page(page: Any, url: str, wall: LoginWall) -> Visit:
    """Go to `url` (following redirects) and say whether we landed on the login wall."""
    response = await page.goto(url, wait_until="load", timeout=NAV_TIMEOUT_MS)
    status = response.status if response is not None else None
    return Visit(page.url, status, await is_wall(page, status, wall))


async def log_in(context: Any, site: Site, env: dict[str, str]) -> None:
    """Follow the site's recipe in `context`, then check the start page is no longer a wall.

    Raises `LoginFailed` if a credential is missing, the form is not there, or the site still
    shows the wall afterwards (wrong credentials). The caller saves the context's cookies.
    """
    recipe = site.login.recipe
    if recipe is None:
        raise LoginFailed(f"no login recipe; a person must log in (skill: {site.login.skill})")
    missing = [name for name in recipe.fields.values() if not env.get(name)]
    if missing:
        raise LoginFailed(f"{', '.join(missing)} not set in .env")
    page = await context.new_page()
    try:
        await page.goto(recipe.url, wait_until="load", timeout=NAV_TIMEOUT_MS)
        for selector, name in recipe.fields.items():
            try:
                await page.fill(selector, env[name], timeout=NAV_TIMEOUT_MS / 2)
            except Exception:
                raise LoginFailed(f"login form field {selector!r} (for {name}) not found at "
                                  f"{recipe.url}") from None
        try:
            async with page.expect_navigation(wait_until="load", timeout=NAV_TIMEOUT_MS):
                await page.click(recipe.submit, timeout=NAV_TIMEOUT_MS / 2)
        except Exception:
            raise LoginFailed(f"submitting the login form ({recipe.submit!r}) did not load a "
                              "page") from None
        visit = await open_page(page, site.start_url, site.login_wall)
        if visit.wall:
            raise LoginFailed("still at the login wall after logging in: the credentials "
                              f"({', '.join(recipe.fields.values())}) were refused")
    finally:
        await page.close()
