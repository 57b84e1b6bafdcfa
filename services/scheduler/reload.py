"""Hot reload of tasks.json by mtime polling: one `stat` per interval, nothing when unchanged.

Each good version is shared in the `config` KV (and saved in the state folder), so a scheduler
that restarts on a broken file runs the newest good schedule any service saw (and reports the
file) instead of none.
"""

from __future__ import annotations

from pathlib import Path

from nats.js.kv import KeyValue

from koda.shared.errors import ConfigError
from koda.shared.lastgood import LastGood
from koda.shared.tasks import TasksFile, parse_tasks


class TasksFileWatch:
    """Notices when tasks.json changed and loads it; never raises on a bad file."""

    def __init__(self, path: Path, state_dir: Path, config: KeyValue) -> None:
        self.path = path
        self.config = config
        self.good = LastGood(path, state_dir, "scheduler", parse_tasks)
        self._seen: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        return self._stamp() != self._seen

    async def load(self) -> TasksFile | ConfigError:
        """The file as it is now (a `ConfigError` when it cannot be used; a newer last good
        version than the one in hand, with `good.error` set); marks it seen."""
        self._seen = self._stamp()
        had = self.good.value
        try:
            value = await self.good.load_shared(self.config)
        except ConfigError as exc:
            return exc
        if self.good.error is not None and value is had:
            return self.good.error  # the schedule in hand is the last good one already
        return value
