"""The scraper service: Playwright browser jobs per site with cookie jars that refresh themselves.

Public entry for the CLI: `site_admin` (`koda site list|clear`). It imports its module on call,
so starting the service (`python -m koda.services.scraper`) loads nothing early.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from koda.shared.settings import KodaSettings


async def site_admin(settings: KodaSettings, action: str, site: str | None) -> tuple[int, str]:
    """`koda site list` and `koda site clear SITE`: (exit code, what to print)."""
    from .flags import site_admin as run

    return await run(settings, action, site)
