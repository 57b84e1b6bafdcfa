"""Which task a run request names: tasks.json as it is, or its last good version.

A broken tasks.json does not stop runs: the worker runs on the newest good version any service
saw (the `config` KV; its own saved copy when NATS is unreachable), also across its restarts.
A run no retry can help (its task is unknown, no good version exists) raises `Unrunnable`,
which fails it on its first delivery with the cause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from nats.js.kv import KeyValue

from koda.shared.errors import ConfigError, Permanent
from koda.shared.home import HomeLayout
from koda.shared.lastgood import LastGood
from koda.shared.tasks import Task, TasksFile, parse_tasks

log = logging.getLogger(__name__)


@dataclass
class Unrunnable(Permanent):
    """A run no retry can help (its task is unknown, tasks.json unusable): fails at once."""

    cause: str = "config"


class TaskLookup:
    """tasks.json, reloaded when its mtime changes; a skill name works as a task too."""

    def __init__(self, layout: HomeLayout, state_dir: Path, config: KeyValue) -> None:
        self.layout = layout
        self.config = config  # the `config` KV: the shared last good version
        self.good = LastGood(layout.tasks, state_dir, "worker", parse_tasks)
        self._stamp: int | None = None

    @property
    def tasks(self) -> TasksFile | None:
        """The tasks in force (None before the first good load)."""
        return self.good.value

    async def find(self, task_id: str) -> Task:
        try:
            stamp: int | None = self.layout.tasks.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._stamp or self.good.value is None:
            self._stamp = stamp
            try:
                await self.good.load_shared(self.config)
            except ConfigError as exc:
                raise Unrunnable(f"tasks.json unusable: {exc}", "config") from exc
            if self.good.error is not None:
                log.warning("tasks.json unusable, running on the last good version: %s",
                            self.good.error)
        task = self.good.value.get(task_id) if self.good.value else None
        if task is None and self.layout.skill(task_id).is_file():
            task = Task(id=task_id, skill=task_id)  # e.g. consolidate-learnings, queued by a tool
        if task is None:
            raise Unrunnable(f"no task {task_id!r} in tasks.json and no skill of that name",
                             "unknown_task")
        return task
