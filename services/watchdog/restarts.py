"""Restart counts, read from the file the supervisord event listener keeps, as Prometheus counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from koda.shared.settings import KodaSettings


class RestartCollector(Collector):
    """Exports `koda_service_restarts_total{service}` at scrape time, so it is never stale."""

    def __init__(self, settings: KodaSettings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[CounterMetricFamily]:
        from koda.shared.supervision import read_restarts

        family = CounterMetricFamily(
            "koda_service_restarts", "Restarts of each supervised program", labels=["service"]
        )
        for name, entry in sorted(read_restarts(self.settings).items()):
            family.add_metric([name], float(entry.get("restarts", 0)))
        yield family
