"""Hot reload of tasks.json by mtime polling: one `stat` per interval, nothing when unchanged."""

from __future__ import annotations

from pathlib import Path

from koda.shared.errors import ConfigError
from koda.shared.tasks import TasksFile, load_tasks


class TasksFileWatch:
    """Notices when tasks.json changed and loads it; never raises on a bad file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    def changed(self) -> bool:
        return self._stamp() != self._seen

    def load(self) -> TasksFile | ConfigError:
        """The file as it is now (a `ConfigError` when it cannot be used); marks it seen."""
        self._seen = self._stamp()
        try:
            return load_tasks(self.path)
        except ConfigError as exc:
            return exc
