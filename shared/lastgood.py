"""The last good copy of a config file, kept across restarts.

A service that reads tasks.json (or any config) keeps running on the last version that parsed
when the file breaks. In memory that lasts until the next restart; so each good version is also
written to `<state dir>/last-good/<service>/<file name>` (outside the agent's reach), and a
service that starts on a broken file runs on that copy and says so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from .configfile import read_config_text
from .errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


class LastGood(Generic[T]):
    """Parses `source` with `parse(text, path)`; persists each good text; falls back to it."""

    def __init__(self, source: Path, state_dir: Path, service: str,
                 parse: Callable[[str, Path], T]) -> None:
        self.source = source
        self.copy = state_dir / "last-good" / service / source.name
        self.parse = parse
        self.value: T | None = None
        self.from_copy = False  # the value came from the saved copy, not from the file
        self.error: ConfigError | None = None  # why the file itself is unusable now

    def load(self) -> T:
        """The file parsed now; on a `ConfigError`, the last good version if there is one
        (in memory, else the saved copy). Raises the `ConfigError` when there is none."""
        try:
            text = read_config_text(self.source)
            value = self.parse(text, self.source)
        except ConfigError as exc:
            self.error = exc
            if self.value is None:
                self.value = self._saved()
                self.from_copy = self.value is not None
            if self.value is None:
                raise
            return self.value
        self.value, self.from_copy, self.error = value, False, None
        self._save(text)
        return value

    def _saved(self) -> T | None:
        try:
            text = self.copy.read_text(encoding="utf-8")
            value = self.parse(text, self.source)
        except (OSError, ConfigError, UnicodeDecodeError):
            return None
        log.warning("%s is unusable; running on the last good copy saved at %s",
                    self.source, self.copy)
        return value

    def _save(self, text: str) -> None:
        try:
            if self.copy.exists() and self.copy.read_text(encoding="utf-8") == text:
                return
            self.copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.copy.with_name(f".{self.copy.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, self.copy)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:  # a full state disk must not stop the service
            log.warning("could not save the last good %s: %s", self.source.name, exc)
