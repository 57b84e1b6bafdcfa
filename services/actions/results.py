"""Action results, durable by idempotency key in the `actions` KV bucket.

A key is claimed (a `running` record, created only if absent) before its script starts and
finished with the result afterwards. Whoever finds a finished record returns it and runs nothing;
whoever finds a running one waits, unless the instance holding it is gone. A run cut short that
way is recorded as interrupted and never re-run: it may already have taken effect, and doing a
public action twice is worse than asking a person to check (see docs/contracts.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nats.js.kv import KeyValue

from koda.shared.kv_record import KVRecords
from koda.shared.messages import ActionRecord, ActionResult, action_key


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ours to run, already done, or held by someone."""

    state: Literal["claimed", "done", "held"]
    record: ActionRecord
    revision: int


class ResultStore:
    """Claim, finish and look up action results by idempotency key."""

    def __init__(self, kv: KeyValue, instance: str) -> None:
        self.kv = kv
        self.records = KVRecords(kv, ActionRecord)
        self.instance = instance

    async def get(self, idempotency_key: str) -> tuple[ActionRecord, int] | None:
        found = await self.records.get(action_key(idempotency_key))
        return (found.value, found.revision) if found else None

    async def claim(self, idempotency_key: str, name: str) -> Claim:
        """Create the running record, or report the record someone else made first."""
        record = ActionRecord(idempotency_key=idempotency_key, name=name, status="running",
                              instance=self.instance)
        for _ in range(5):
            revision = await self.records.write(action_key(idempotency_key), record, 0)
            if revision is not None:
                return Claim("claimed", record, revision)
            found = await self.get(idempotency_key)
            if found is not None:
                existing, rev = found
                return Claim("done" if existing.status == "done" else "held", existing, rev)
        raise RuntimeError(f"could not claim action key {idempotency_key!r}")

    async def finish(self, claim: Claim, result: ActionResult) -> ActionRecord:
        """Record the result under the key; a repeat of the key gets exactly this back."""
        done = claim.record.model_copy(update={"status": "done", "result": result})
        if await self.records.write(action_key(claim.record.idempotency_key), done,
                                    claim.revision) is None:
            # Someone declared our claim dead and wrote an outcome: theirs stands, ours is logged.
            found = await self.get(claim.record.idempotency_key)
            if found is not None and found[0].status == "done":
                return found[0]
            await self.kv.put(action_key(claim.record.idempotency_key), done.to_bytes())
        return done

    async def take_over(self, claim: Claim, result: ActionResult) -> ActionRecord | None:
        """Finish a claim whose holder is gone with `result` (compare-and-set on its revision)."""
        done = claim.record.model_copy(update={"status": "done", "result": result})
        if await self.records.write(action_key(claim.record.idempotency_key), done,
                                    claim.revision) is None:
            return None
        return done
