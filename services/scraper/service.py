"""Scraper: Playwright browser jobs with self-refreshing cookies (issue 5).

Until then it starts, heartbeats and serves /healthz and /metrics like every service.
"""

from __future__ import annotations

from koda.shared.service import Service


class ScraperService(Service):
    name = "scraper"


SERVICE = ScraperService
