"""In-memory views of KV state the scheduler consults at every fire, kept fresh by KV watchers
(`koda.shared.kvwatch.KeyWatch`, live again at once after a NATS restart).

Reading the KV at fire time would put a round trip per task on the path to the publish; a
watcher delivers changes within milliseconds instead, so a fire only looks at a dict.
"""

from __future__ import annotations

import logging

from koda.shared.messages import RUN_TERMINAL, RunLedgerEntry

log = logging.getLogger(__name__)


class PausedTasks:
    """Task ids with a `pause.<task>` record in the `scheduler` KV."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def apply(self, key: str, value: bytes | None) -> None:
        task = key.removeprefix("pause.")
        if value is None:
            self.ids.discard(task)
        else:
            self.ids.add(task)


class ActiveRuns:
    """Run ids per task whose ledger entry in the `runs` KV is not terminal yet."""

    def __init__(self) -> None:
        self.by_task: dict[str, set[str]] = {}

    def apply(self, key: str, value: bytes | None) -> None:
        task = key.split(".", 1)[0]
        active = self.by_task.setdefault(task, set())
        status = None
        if value is not None:
            try:
                status = RunLedgerEntry.from_bytes(value).status
            except ValueError:
                log.warning("unreadable run ledger entry", extra={"key": key})
        if status is None or status in RUN_TERMINAL:
            active.discard(key)
        else:
            active.add(key)
        if not active:
            del self.by_task[task]

    def running(self, task: str) -> int:
        return len(self.by_task.get(task, ()))
