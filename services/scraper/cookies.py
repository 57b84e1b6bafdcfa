"""Cookie jars: a site's Playwright storage state in `data/cookies/<site>.json`, mode 0600.

The file is written to a temporary file created 0600 and renamed over the old one, so a reader
never sees half a jar and the cookies are never readable by another user, not even for a moment.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class CookieJar:
    """One site's saved browser session."""

    def __init__(self, directory: Path, site: str) -> None:
        self.path = directory / f"{site}.json"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, Any] | None:
        """The storage state, or None when there is none or it is unreadable (log in afresh)."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # in case the file existed with a wider mode
        tmp.replace(self.path)

    def age_seconds(self) -> float:
        """Seconds since the jar was last saved; NaN when there is none."""
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except OSError:
            return float("nan")
