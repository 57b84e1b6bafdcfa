"""Typed records in a KV bucket, changed by compare-and-set on their revision.

Every keeper of shared state (approvals, the run ledger, the limits record, the scraper's site
flags) reads and writes through this one type: a write names the revision it read (0: the key
is absent), and loses, instead of overwriting, when another writer came first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from .messages import Message

M = TypeVar("M", bound=Message)


@dataclass
class Versioned(Generic[M]):
    """A record as read, with the revision a compare-and-set write must name."""

    value: M
    revision: int


class KVRecords(Generic[M]):
    """The records of one model in one bucket."""

    def __init__(self, kv: KeyValue, model: type[M]) -> None:
        self.kv, self.model = kv, model

    async def get(self, key: str) -> Versioned[M] | None:
        """The record, or None when the key is absent or deleted."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return Versioned(self.model.model_validate_json(entry.value), int(entry.revision or 0))

    async def write(self, key: str, value: M, revision: int) -> int | None:
        """Store `value` if the key is still at `revision` (0: absent); the new revision, or None
        when another writer got there first."""
        try:
            if revision:
                return int(await self.kv.update(key, value.to_bytes(), last=revision))
            return int(await self.kv.create(key, value.to_bytes()))
        except KeyWrongLastSequenceError:
            return None

    async def change(self, key: str, change: Callable[[M | None], M | None],
                     attempts: int = 10) -> M | None:
        """Read, apply `change` and write compare-and-set, from a fresh read each time another
        writer came first. `change` returns None to write nothing. The record written, or None."""
        for _ in range(attempts):
            found = await self.get(key)
            updated = change(found.value if found else None)
            if updated is None:
                return None
            if await self.write(key, updated, found.revision if found else 0) is not None:
                return updated
        return None

    async def keys(self, prefix: str = "") -> list[str]:
        try:
            return [k for k in await self.kv.keys() if k.startswith(prefix)]
        except NoKeysError:
            return []
