"""The last good copy of a config file, kept across restarts and shared by every service.

A service that reads tasks.json (or any config) keeps running on the last version that parsed
when the file breaks. In memory that lasts until the next restart; so each good version is also
written to the `config` KV (`<file stem>`, compare-and-set, only when newer by the file's mtime)
and to `<state dir>/last-good/<service>/<file name>` (outside the agent's reach). A service
that starts on a broken file runs on the newest of the two: the KV holds the newest version any
service saw, so a worker that never read the last good edit still runs it; the local copy is
the fallback when NATS cannot be reached.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from nats.errors import Error as NatsError
from nats.js.kv import KeyValue

from .configfile import read_config_text
from .errors import ConfigError
from .kv_record import KVRecords
from .messages import LastGoodConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class LastGood(Generic[T]):
    """Parses `source` with `parse(text, path)`; keeps each good text; falls back to the newest."""

    def __init__(self, source: Path, state_dir: Path, service: str,
                 parse: Callable[[str, Path], T]) -> None:
        self.source = source
        self.service = service
        self.copy = state_dir / "last-good" / service / source.name
        self.key = source.stem  # the key in the `config` KV
        self.parse = parse
        self.value: T | None = None
        self.mtime_ns = -1  # the source's mtime when `value` was read from it
        self.text = ""
        self.from_copy = False  # the value came from a saved copy (local or KV), not the file
        self.error: ConfigError | None = None  # why the file itself is unusable now

    def load(self) -> T:
        """The file parsed now; on a `ConfigError`, the last good version if there is one
        (in memory, else the saved copy). Raises the `ConfigError` when there is none."""
        try:
            mtime_ns = self.source.stat().st_mtime_ns  # before the read: a later edit wins later
        except OSError:
            mtime_ns = -1
        try:
            text = read_config_text(self.source)
            value = self.parse(text, self.source)
        except ConfigError as exc:
            self.error = exc
            if self.value is None:
                self._adopt_saved()
            if self.value is None:
                raise
            return self.value
        self.value, self.text, self.mtime_ns = value, text, mtime_ns
        self.from_copy, self.error = False, None
        self._save(text, mtime_ns)
        return value

    async def load_shared(self, kv: KeyValue) -> T:
        """`load`, then the `config` KV: a good file read is shared there when it is newer;
        a broken file runs the KV's version when it is newer than the one in hand. Raises the
        `ConfigError` when neither the file nor any copy has a good version."""
        try:
            self.load()
        except ConfigError:
            if not await self._adopt_shared(kv):
                raise
        else:
            if self.error is None:
                await self._share(kv)
            else:
                await self._adopt_shared(kv)
        assert self.value is not None
        return self.value

    async def current(self, kv: KeyValue) -> T | None:
        """`load_shared`, or None when there is no good version anywhere."""
        try:
            return await self.load_shared(kv)
        except ConfigError:
            return None

    async def _share(self, kv: KeyValue) -> None:
        digest = hashlib.sha256(self.text.encode()).hexdigest()
        record = LastGoodConfig(text=self.text, mtime_ns=self.mtime_ns, sha256=digest,
                                seen_by=self.service)

        def newer(held: LastGoodConfig | None) -> LastGoodConfig | None:
            if held is not None and (held.mtime_ns >= record.mtime_ns or held.sha256 == digest):
                return None
            return record

        try:
            await KVRecords(kv, LastGoodConfig).change(self.key, newer)
        except (NatsError, OSError, TimeoutError, ValueError) as exc:
            # NATS down (or a record this release cannot read): the local copy still holds.
            log.warning("could not share the last good %s: %s", self.source.name, exc)

    async def _adopt_shared(self, kv: KeyValue) -> bool:
        """Run the KV's version when it is newer than the one in hand; True if a value is held."""
        try:
            found = await KVRecords(kv, LastGoodConfig).get(self.key)
        except (NatsError, OSError, TimeoutError, ValueError) as exc:
            log.warning("could not read the shared last good %s: %s", self.source.name, exc)
            return self.value is not None
        if found is None or found.value.mtime_ns <= self.mtime_ns:
            return self.value is not None
        record = found.value
        try:
            value = self.parse(record.text, self.source)
        except ConfigError:  # a version this release cannot parse: keep what we have
            return self.value is not None
        log.warning("%s is unusable; running on the last good version %s saw (shared in NATS)",
                    self.source, record.seen_by)
        self.value, self.text, self.mtime_ns, self.from_copy = value, record.text, record.mtime_ns, True
        self._save(record.text, record.mtime_ns)
        return True

    def _adopt_saved(self) -> None:
        try:
            text = self.copy.read_text(encoding="utf-8")
            mtime_ns = self.copy.stat().st_mtime_ns
            value = self.parse(text, self.source)
        except (OSError, ConfigError, UnicodeDecodeError):
            return
        log.warning("%s is unusable; running on the last good copy saved at %s",
                    self.source, self.copy)
        self.value, self.text, self.mtime_ns, self.from_copy = value, text, mtime_ns, True

    def _save(self, text: str, mtime_ns: int) -> None:
        """The local copy, stamped with the source's mtime (so copies compare by age)."""
        try:
            if self.copy.exists() and self.copy.read_text(encoding="utf-8") == text:
                return
            self.copy.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.copy.with_name(f".{self.copy.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(text, encoding="utf-8")
                if mtime_ns >= 0:
                    os.utime(tmp, ns=(mtime_ns, mtime_ns))
                os.replace(tmp, self.copy)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:  # a full state disk must not stop the service
            log.warning("could not save the last good %s: %s", self.source.name, exc)
