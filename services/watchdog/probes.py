"""End-to-end probes: is the system doing its job, not only are its processes alive?

- scheduler tick freshness (the scheduler's `koda_scheduler_last_tick_timestamp_seconds`),
- consumer lag on each work queue (JetStream consumer info),
- gateway reachability (its /healthz),
- cookie age per site (the scraper's `koda_scraper_cookie_age_seconds`).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from koda.shared.bus import Bus, consumer_name
from koda.shared.settings import KodaSettings

WORK_QUEUES = ("RUNS", "ACTIONS", "SCRAPE")


def _get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # Koda's own services only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def parse_samples(text: str, name: str) -> dict[str, float]:
    """Samples of one metric from Prometheus text format, keyed by their label string."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            labels = key[len(name):].strip("{}")
            try:
                out[labels] = float(value)
            except ValueError:
                continue
    return out


class Probes:
    """Runs every probe and exports what it saw."""

    def __init__(self, settings: KodaSettings, bus: Bus, registry: CollectorRegistry) -> None:
        self.settings, self.bus = settings, bus
        self.ok = Gauge("koda_watchdog_probe_ok", "1 if the probe passed", ["probe"],
                        registry=registry)
        self.pending = Gauge("koda_watchdog_consumer_pending",
                             "Messages waiting or unacknowledged per work queue", ["stream"],
                             registry=registry)
        self.tick_age = Gauge("koda_watchdog_scheduler_tick_age_seconds",
                              "Seconds since the scheduler's last tick", registry=registry)
        self.cookie_age = Gauge("koda_watchdog_cookie_age_seconds", "Cookie age per site, as seen",
                                ["site"], registry=registry)

    def _url(self, service: str, path: str) -> str:
        return self.settings.service_url(service, path)

    async def run_all(self) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for stream in WORK_QUEUES:
            try:
                info = await self.bus.js.consumer_info(stream, consumer_name(stream))
                waiting = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            except Exception:  # no consumer yet: nobody consumes this queue
                waiting = 0
            self.pending.labels(stream).set(waiting)
            seen[f"pending:{stream}"] = waiting
        code, _ = await asyncio.to_thread(_get, self._url("gateway", "/healthz"))
        self.ok.labels("gateway").set(1 if code == 200 else 0)
        seen["gateway"] = code
        _, text = await asyncio.to_thread(_get, self._url("scheduler", "/metrics"))
        ticks = parse_samples(text, "koda_scheduler_last_tick_timestamp_seconds")
        if ticks:
            age = max(0.0, time.time() - max(ticks.values()))
            self.tick_age.set(age)
            self.ok.labels("scheduler_tick").set(1 if age < 120 else 0)
            seen["scheduler_tick_age"] = age
        _, text = await asyncio.to_thread(_get, self._url("scraper", "/metrics"))
        for labels, age in parse_samples(text, "koda_scraper_cookie_age_seconds").items():
            site = labels.split('"')[1] if '"' in labels else labels
            self.cookie_age.labels(site).set(age)
            seen[f"cookie:{site}"] = age
        return seen
