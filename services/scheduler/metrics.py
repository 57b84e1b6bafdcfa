"""The scheduler's Prometheus metrics, exactly as docs/contracts.md lists them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Lateness is a few milliseconds when healthy; the upper buckets catch a stalled loop.
LATENESS_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 120.0)


class SchedulerMetrics:
    """Counters and histograms on the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks = Gauge("koda_scheduler_tasks", "Tasks loaded from tasks.json", ["state"],
                           registry=registry)
        self.fires = Counter("koda_scheduler_fires_total", "Run requests published by the scheduler",
                             ["task", "trigger"], registry=registry)
        self.lateness = Histogram(
            "koda_scheduler_fire_lateness_seconds",
            "From a fire's scheduled instant to its run request acknowledged by JetStream",
            buckets=LATENESS_BUCKETS, registry=registry)
        self.missed = Counter("koda_scheduler_missed_fires_total",
                              "Fires that fell while no scheduler ran, by the catch-up policy applied",
                              ["task", "policy"], registry=registry)
        self.skipped = Counter("koda_scheduler_skipped_total",
                               "Fires not published (reason: overlap, paused)", ["task", "reason"],
                               registry=registry)
        self.reload_errors = Counter("koda_scheduler_reload_errors_total",
                                     "tasks.json changes rejected (the last good schedule kept)",
                                     registry=registry)
        self.last_tick = Gauge("koda_scheduler_last_tick_timestamp_seconds",
                               "Unix time the scheduler loop last woke", registry=registry)
        self.leader = Gauge("koda_scheduler_leader", "1 while this instance holds the leader lock",
                            registry=registry)
