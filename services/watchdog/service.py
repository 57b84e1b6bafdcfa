"""Watchdog: heartbeats, restart counts, failure classification and healing (issue 6).

For now it exports the restart counts of every supervised program.
"""

from __future__ import annotations

from koda.shared.service import Service

from .restarts import RestartCollector


class WatchdogService(Service):
    name = "watchdog"

    async def setup(self) -> None:
        self.registry.register(RestartCollector(self.settings))


SERVICE = WatchdogService
