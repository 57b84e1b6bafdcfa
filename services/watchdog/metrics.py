"""The watchdog's own metrics (names from docs/contracts.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_SECONDS = (0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)


class WatchdogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.incidents = Counter("koda_watchdog_incidents_total", "Incidents by class and outcome",
                                 ["class", "outcome"], registry=registry)
        self.heal_actions = Counter("koda_watchdog_heal_actions_total", "Fixes applied",
                                    ["action"], registry=registry)
        self.time_to_detect = Histogram("koda_watchdog_time_to_detect_seconds",
                                        "Failure to detection", buckets=_SECONDS, registry=registry)
        self.time_to_healthy = Histogram("koda_watchdog_time_to_healthy_seconds",
                                         "Failure to healthy again", buckets=_SECONDS,
                                         registry=registry)
