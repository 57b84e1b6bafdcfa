"""What the watchdog gathers about a failing service before it decides anything."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_TAIL_LINES = 50


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last `lines` lines of a log file (bounded read, whatever the file's size)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return list(deque(data.splitlines(), maxlen=lines))


@dataclass
class Evidence:
    """A service's state at the moment of an incident."""

    service: str
    state: str
    exit_status: int | None
    restarts: int
    recent_restarts: int
    log_tail: list[str] = field(default_factory=list)
    detail: str = ""

    def as_data(self, redact: Any, lines: int = 10) -> dict[str, Any]:
        """For events and reports: the newest log lines only, secrets redacted."""
        return {
            "service": self.service,
            "state": self.state,
            "exit_status": self.exit_status,
            "restarts": self.restarts,
            "recent_restarts": self.recent_restarts,
            "log_tail": [redact(line) for line in self.log_tail[-lines:]],
            "detail": redact(self.detail),
        }


def restarts_in_window(entry: dict[str, Any], window: float, now: float | None = None) -> int:
    """How many of a program's recorded exits fell in the last `window` seconds."""
    now = now or time.time()
    return sum(1 for t in entry.get("recent", []) if now - float(t) <= window)
