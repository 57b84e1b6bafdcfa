"""Scheduler: reads tasks.json and fires due tasks as run requests (firing arrives with issue 8).

For now it loads and validates tasks.json at start, reports a broken file as an event, and
exposes how many tasks are loaded.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from koda.shared.errors import ConfigError
from koda.shared.home import HomeLayout
from koda.shared.service import Service
from koda.shared.tasks import load_tasks

log = logging.getLogger(__name__)


class SchedulerService(Service):
    name = "scheduler"

    async def setup(self) -> None:
        self.tasks_loaded = Gauge("koda_scheduler_tasks", "Tasks loaded from tasks.json",
                                  ["state"], registry=self.registry)
        layout = HomeLayout(self.settings.expanded_home())
        try:
            tasks = load_tasks(layout.tasks)
        except ConfigError as exc:
            log.error("tasks.json is invalid", extra={"problems": [str(p) for p in exc.problems]})
            await self.bus.emit(self.bus.event(
                "config.invalid", f"tasks.json: {len(exc.problems)} problem(s)", severity="error",
                data={"file": str(layout.tasks), "problems": [str(p) for p in exc.problems]}))
            return
        enabled = sum(1 for t in tasks.tasks if t.enabled)
        self.tasks_loaded.labels("enabled").set(enabled)
        self.tasks_loaded.labels("disabled").set(len(tasks.tasks) - enabled)


SERVICE = SchedulerService
