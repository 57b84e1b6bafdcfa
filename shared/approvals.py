"""Approvals as durable state: one record per proposal in the `approvals` KV.

A decision is taken once: every change is a compare-and-set on the record's revision, so a
second click, a replayed message or a decision after expiry changes nothing. Only a store
holding the gateway's signing key can decide, and it signs what it decided (`signed_fields`):
the actions service verifies that signature with the public key, so a record any other process
writes into the bucket (the worker may: it proposes) approves nothing. Only an approved
record is published to ACTIONS, with the idempotency key `approval:<id>` as its message id, so it
runs once; `dispatch_pending` re-publishes an approved record whose publish was cut short (the
same id makes that harmless).

A record of a paused tool call (`tool`, `session_id` set: docs/approvals.md) is not an action:
its decision, whatever it is, wakes the paused run instead (a `RunRequest` for the same run id
with `resume_approval`, message id `<run id>:approval:<id>`), and the worker resumes the session,
where the call runs (or is refused) as decided. A `propose_action` call is both: its action is
dispatched and its run woken. An approver may edit the args: the record keeps what was
proposed in `original_args`, and the signature covers the edited args that will run.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import approval_keys
from .bus import Bus
from .events import ApprovalEvent
from .kv_record import KVRecords
from .messages import ActionRequest, ApprovalRecord, RunRequest, content_key
from .secrets import Redactor, redactor_for_home

log = logging.getLogger(__name__)
REMIND_AT = 0.75  # remind when three quarters of the approval window has passed
#: The worker's tool that proposes an action kind (an approved one goes to ACTIONS).
PROPOSE_TOOL = "mcp__koda__propose_action"


def is_action(record: ApprovalRecord) -> bool:
    """True when approving the record means publishing an action to ACTIONS."""
    return record.tool is None or record.tool == PROPOSE_TOOL


def pauses_run(record: ApprovalRecord) -> bool:
    """True when a run waits on this record's decision (a paused session)."""
    return record.session_id is not None


def is_gated(patterns: list[str], name: str) -> bool:
    """True if an action kind or tool name matches one of a task's `gated` globs."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def new_proposal(task: str, run_id: str, action: str, *, args: dict[str, Any] | None = None,
                 reason: str = "", artifact: str | None = None, timeout_minutes: int = 24 * 60,
                 now: datetime | None = None) -> ApprovalRecord:
    """A pending approval for `ApprovalStore.propose`, with the contract's id `<run id>.<12 hex of
    action and args>` (a resumed step proposing the same again gets the same record) and its
    expiry from the task's `approval_timeout_minutes`."""
    now = now or datetime.now(UTC)
    args = args or {}
    return ApprovalRecord(
        id=f"{run_id}.{content_key(action, args)}", task=task, run_id=run_id, action=action, args=args,
        reason=reason, artifact=artifact, created_at=now,
        expires_at=now + timedelta(minutes=timeout_minutes))


def signed_fields(record: ApprovalRecord) -> dict[str, Any]:
    """What a decision's signature covers: which action, with which arguments, run under which
    key, decided how, by whom and when."""
    data = record.model_dump(mode="json")
    fields = ("id", "task", "run_id", "action", "args", "status", "decided_by", "decided_at")
    return {**{k: data[k] for k in fields},
            "idempotency_key": record.idempotency_key or f"approval:{record.id}"}


def genuine(record: ApprovalRecord, verify_key: str | None) -> bool:
    """True if the record's decision carries the gateway's valid signature."""
    return bool(verify_key) and approval_keys.verify(signed_fields(record), record.signature,
                                                     str(verify_key))


@dataclass
class Decision:
    """What a decision attempt did: `changed` is False for a repeat, a late or a foreign click."""

    changed: bool
    record: ApprovalRecord | None
    reason: str = ""


class ApprovalStore:
    """Create, read and decide approvals; every service shares the same records through NATS."""

    def __init__(self, bus: Bus, redact: Redactor | None = None) -> None:
        self.bus = bus
        self.kv = bus.kv["approvals"]
        self.records = KVRecords(self.kv, ApprovalRecord)
        self.redact = redact or redactor_for_home(bus.settings.expanded_home())
        key = bus.settings.approval_signing_key
        self._signing_key = key.get_secret_value() if key else None

    async def propose(self, record: ApprovalRecord) -> ApprovalRecord:
        """Store a new pending approval (idempotent on its id) and announce it.

        What the agent wrote (reason, artifact, args) is redacted of secret values first: the
        record is shown to people and copied into events.
        """
        args = json.loads(self.redact(json.dumps(record.args))) if record.args else {}
        record = record.model_copy(update={
            "idempotency_key": record.idempotency_key or f"approval:{record.id}",
            "reason": self.redact(record.reason), "args": args,
            "artifact": self.redact(record.artifact) if record.artifact else record.artifact})
        if await self.records.write(record.id, record, 0) is None:
            existing = await self.get(record.id)
            assert existing is not None
            return existing[0]
        await self.bus.emit(self.bus.event(
            "approval.requested", f"{record.action} for {record.task} needs approval",
            task=record.task, run_id=record.run_id,
            data=ApprovalEvent(approval_id=record.id, action=record.action, reason=record.reason,
                               artifact=record.artifact, expires_at=record.expires_at)))
        return record

    async def get(self, approval_id: str) -> tuple[ApprovalRecord, int] | None:
        found = await self.records.get(approval_id)
        return (found.value, found.revision) if found else None

    async def all(self) -> list[ApprovalRecord]:
        out = []
        for key in await self.records.keys():
            got = await self.get(key)
            if got:
                out.append(got[0])
        return sorted(out, key=lambda r: r.created_at)

    async def pending(self) -> list[ApprovalRecord]:
        return [r for r in await self.all() if r.status == "pending"]

    async def find_by_message(self, message_id: int) -> ApprovalRecord | None:
        """The approval whose Discord message is `message_id` (a reaction names only the message)."""
        return next((r for r in await self.all() if r.discord_message_id == message_id), None)

    async def note_message(self, approval_id: str, channel_id: int, message_id: int) -> bool:
        """Remember where the gateway posted an approval; never touches status or decision.

        Returns False when the record already names a message (another post won) or is gone.
        """
        def noted(record: ApprovalRecord | None) -> ApprovalRecord | None:
            if record is None or record.discord_message_id is not None:
                return None
            return record.model_copy(update={"discord_channel_id": channel_id,
                                             "discord_message_id": message_id})
        return await self.records.change(approval_id, noted, attempts=5) is not None

    async def decide(self, approval_id: str, approve: bool, who: str,
                     now: datetime | None = None, note: str | None = None,
                     args: dict[str, Any] | None = None) -> Decision:
        """Approve or reject once. Late decisions expire the record instead. `args` (approvals
        only) replace the proposed arguments: what runs is what the approver approved.

        A record changed under us by something that is not a decision (the gateway noting its
        message, a reminder) is read again; one changed by a decision makes this one a no-op.
        """
        now = now or datetime.now(UTC)
        if self._signing_key is None:
            return Decision(False, None, "only the gateway decides approvals "
                            "(this process has no KODA_APPROVAL_SIGNING_KEY)")
        for _ in range(10):
            got = await self.get(approval_id)
            if got is None:
                return Decision(False, None, "no such approval")
            record, revision = got
            if record.status != "pending":
                return Decision(False, record, f"already {record.status}")
            if record.expires_at and now >= record.expires_at:
                expired = await self._transition(record, revision, "expired", "expiry", now)
                if expired is None:
                    continue
                return Decision(False, await self._wake(expired), "expired")
            status = "approved" if approve else "rejected"
            edit = args if approve and args is not None and args != record.args else None
            updated = await self._transition(record, revision, status, who, now, note, edit)
            if updated is None:
                continue
            if updated.status == "approved" and is_action(updated):
                updated = await self._dispatch(updated)
            updated = await self._wake(updated)
            return Decision(True, updated)
        current = await self.get(approval_id)
        return Decision(False, current[0] if current else None, "decided concurrently")

    async def _transition(self, record: ApprovalRecord, revision: int, status: str, who: str,
                          now: datetime, note: str | None = None,
                          edit: dict[str, Any] | None = None) -> ApprovalRecord | None:
        note = self.redact(note)[:500] if note else None
        changes: dict[str, Any] = {"status": status, "decided_by": who, "decided_at": now,
                                   "note": note, "signature": None}
        if edit is not None:
            changes.update(args=json.loads(self.redact(json.dumps(edit))),
                           original_args=record.args)
        updated = record.model_copy(update=changes)
        if self._signing_key is not None:
            updated.signature = approval_keys.sign(signed_fields(updated), self._signing_key)
        if await self.records.write(record.id, updated, revision) is None:
            return None
        await self.bus.emit(self.bus.event(
            "approval.decided", f"{record.action} for {record.task}: {status} by {who}",
            task=record.task, run_id=record.run_id,
            data=ApprovalEvent(approval_id=record.id, status=status, decided_by=who,
                               note=note or None,
                               # The audit trail of an edit: what was proposed and what was
                               # approved instead.
                               edited=True if edit is not None else None,
                               original_args=updated.original_args if edit is not None else None,
                               args=updated.args if edit is not None else None)))
        return updated

    async def _wake(self, record: ApprovalRecord) -> ApprovalRecord:
        """Queue the paused run again so a worker resumes it with this decision; the message id
        makes a repeat (a restarted sweep) one request, and the worker ignores a stale one."""
        if not pauses_run(record) or record.woken or record.status == "pending":
            return record
        now = datetime.now(UTC)
        request = RunRequest(task=record.task, run_id=record.run_id, scheduled_for=now,
                             trigger="manual", requested_by=f"approval:{record.id}",
                             resume_approval=record.id)
        await self.bus.publish(f"koda.runs.{record.task}", request,
                               msg_id=f"{record.run_id}:approval:{record.id}")
        woken = await self.records.change(
            record.id, lambda current: current.model_copy(update={"woken": True})
            if current is not None else None, attempts=5)
        return woken or record

    async def _dispatch(self, record: ApprovalRecord) -> ApprovalRecord:
        key = record.idempotency_key or f"approval:{record.id}"
        request = ActionRequest(name=record.action, idempotency_key=key, args=record.args,
                                run_id=record.run_id, approval_id=record.id,
                                requested_by=record.decided_by or "approver")
        await self.bus.publish(f"koda.actions.{record.action}", request, msg_id=key)
        done = await self.records.change(
            record.id, lambda r: r.model_copy(update={"dispatched": True}) if r else None, attempts=5)
        return done or record

    async def dispatch_pending(self) -> int:
        """Publish approved records whose publish was cut short (a crash mid-decision)."""
        count = 0
        for record in await self.all():
            if record.status != "pending" and pauses_run(record) and not record.woken:
                # Woken before it is dispatched is fine: the action keeps its own once-key.
                await self._wake(record)
            if record.status == "approved" and not record.dispatched and is_action(record):
                # Derived here, not at start: cryptography loads only when there is work.
                verify_key = approval_keys.public_of(self._signing_key) if self._signing_key else None
                if not genuine(record, verify_key):
                    log.warning("approved record without the gateway's signature: not dispatched",
                                extra={"approval_id": record.id})
                    continue
                await self._dispatch(record)
                count += 1
        return count

    async def sweep(self, now: datetime | None = None) -> tuple[list[ApprovalRecord], list[ApprovalRecord]]:
        """Expire overdue approvals and remind once before expiry; returns (reminded, expired)."""
        now = now or datetime.now(UTC)
        reminded, expired = [], []
        for record in await self.pending():
            if record.expires_at is None:
                continue
            got = await self.get(record.id)
            if got is None:
                continue
            record, revision = got
            if record.status != "pending" or record.expires_at is None:
                continue
            if now >= record.expires_at:
                done = await self._transition(record, revision, "expired", "expiry", now)
                if done:
                    expired.append(await self._wake(done))
                continue
            window = record.expires_at - record.created_at
            if not record.reminded and now >= record.created_at + window * REMIND_AT:
                updated = record.model_copy(update={"reminded": True})
                if await self.records.write(record.id, updated, revision) is None:
                    continue
                left = record.expires_at - now
                await self.bus.emit(self.bus.event(
                    "approval.reminder",
                    f"{record.action} for {record.task} expires in {_minutes(left)}",
                    task=record.task, run_id=record.run_id,
                    data=ApprovalEvent(approval_id=record.id, expires_at=record.expires_at)))
                reminded.append(updated)
        return reminded, expired


def _minutes(delta: timedelta) -> str:
    return f"{max(0, int(delta.total_seconds() // 60))} min"
