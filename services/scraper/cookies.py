"""Cookie jars: a site's Playwright storage state in `data/cookies/<site>.json`, mode 0600.

The file is written to a temporary file created 0600 and renamed over the old one, so a reader
never sees half a jar and the cookies are never readable by another user, not even for a moment.
The write never follows a link (`safe_write`), wherever below the home one was planted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from koda.shared.safe_write import make_folder, write_file


class CookieJar:
    """One site's saved browser session."""

    def __init__(self, directory: Path, site: str) -> None:
        self.path = directory / f"{site}.json"
        # Links are refused from the home down: the jar folder is data/cookies of a home.
        self.root = directory.parent.parent if directory.parts[-2:] == ("data", "cookies") else directory

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
        rel = self.path.relative_to(self.root).as_posix()
        folder = self.path.parent.relative_to(self.root).as_posix()
        if folder != ".":
            make_folder(self.root, folder, mode=0o700)
        write_file(self.root, rel, json.dumps(state), mode=0o600, folder_mode=0o700)

    def age_seconds(self) -> float:
        """Seconds since the jar was last saved; NaN when there is none."""
        try:
            return max(0.0, time.time() - self.path.stat().st_mtime)
        except OSError:
            return float("nan")
