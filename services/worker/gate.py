"""Gated tool calls: pause the run at the call, resume it with the person's decision.

The guard hook asks `ApprovalGate.check` about every call of a gated tool (a task's `gated`
globs, built-in or MCP) and every `propose_action`. The first time a call is seen it becomes a
pending `ApprovalRecord` holding the exact call (tool, input, session id, tool-use id) and the
hook answers `defer`: the CLI stops the session there and reports the call, the transcript is
already in NATS, and the run waits as `awaiting_approval`. When a decision wakes the run, the
resumed session replays the same call through the hook, which now answers from the record:

- approved (signed by the gateway, checked with the verify key): `allow`, with the record's
  args as the input, so an edited call runs as edited. A `propose_action` runs its action
  through ACTIONS keyed `approval:<id>` (once per key, whoever asks again); any other tool is
  marked `ran_at` by compare-and-set first and never let through a second time, so a worker
  that dies mid-call cannot make it run twice (the agent is told instead);
- rejected or expired: `deny`, with who decided and their note, which the agent reads.

Approval ids are `<run id>.<12 hex of the call>`: a step run again after a crash that makes
the same call meets the same record instead of asking twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from nats.js.errors import KeyWrongLastSequenceError

from koda.shared.approvals import PROPOSE_TOOL, ApprovalStore, genuine, is_gated
from koda.shared.bus import Bus
from koda.shared.messages import ApprovalRecord
from koda.shared.secrets import Redactor
from koda.shared.tasks import Task

__all__ = ["PROPOSE_TOOL", "ApprovalGate", "Verdict", "refusal"]
#: Sent to a resumed session whose paused call already has its result (the worker resuming it
#: died after the call ran): there is no call left to replay.
RESUME_PROMPT = ("Your session was interrupted after the approved tool call returned. Continue "
                 "the same task from where you left off; do not repeat that call.")


def call_key(*parts: Any) -> str:
    """12 hex of the call: the last part of its approval id."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Verdict:
    """What the hook answers: allow (with `updated_input`), deny (with `reason`) or defer."""

    decision: Literal["allow", "deny", "defer"]
    reason: str = ""
    updated_input: dict[str, Any] | None = None


@dataclass
class ApprovalGate:
    """The gated calls of one run."""

    bus: Bus
    task: Task
    run_id: str
    redact: Redactor
    verify_key: str | None
    timeline: Any = None
    step: str = "main"
    #: The call this session was paused at (set by a `defer`).
    paused: ApprovalRecord | None = None
    #: Approved proposals let through, for `propose_action` to report on.
    allowed: list[ApprovalRecord] = field(default_factory=list)
    #: Approved calls let through in this session: tool-use id -> approval id.
    running: dict[str, str] = field(default_factory=dict)

    def gated(self, tool: str) -> bool:
        return tool == PROPOSE_TOOL or is_gated(self.task.gated, tool)

    def identify(self, tool: str, tool_input: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """(approval id, action, args) of a call."""
        if tool == PROPOSE_TOOL:
            action = str(tool_input.get("action", "")).strip()
            args = tool_input.get("args") or {}
            args = args if isinstance(args, dict) else {"value": args}
            return f"{self.run_id}.{call_key(action, args)}", action, args
        return f"{self.run_id}.{call_key(tool, tool_input)}", tool, dict(tool_input)

    async def check(self, tool: str, tool_input: dict[str, Any], tool_use_id: str | None,
                    session_id: str | None) -> Verdict:
        store = ApprovalStore(self.bus, self.redact)
        approval_id, action, args = self.identify(tool, tool_input)
        if tool == PROPOSE_TOOL and not action:
            return Verdict("deny", "propose_action needs an action, e.g. social.post")
        for _ in range(5):
            got = await store.get(approval_id)
            if got is None:
                record = await self._propose(store, approval_id, tool, tool_input, action, args,
                                             tool_use_id, session_id)
                return self._pause(record)
            record, revision = got
            if record.status == "pending":
                if (record.session_id, record.tool_use_id) != (session_id, tool_use_id):
                    # The same call from a step run again: resume that session instead.
                    moved = record.model_copy(update={"session_id": session_id,
                                                      "tool_use_id": tool_use_id})
                    try:
                        await store.kv.update(approval_id, moved.to_bytes(), last=revision)
                    except KeyWrongLastSequenceError:
                        continue
                    record = moved
                return self._pause(record)
            if record.status != "approved":
                return Verdict("deny", refusal(record))
            if not genuine(record, self.verify_key):
                return Verdict("deny", f"{action} was marked approved, but not with the gateway's "
                               "signature (or this worker has no KODA_APPROVAL_VERIFY_KEY): not run.")
            if tool == PROPOSE_TOOL:
                self.allowed.append(record)
                return Verdict("allow", updated_input={**tool_input, "args": record.args})
            if record.ran_at is not None:
                said = (f" It returned: {record.result}" if record.result is not None
                        else " Its result was not recorded: check its effect instead.")
                return Verdict("deny", f"{action} was approved and already ran once (at "
                               f"{record.ran_at:%Y-%m-%d %H:%M:%S} UTC); it is not run a second "
                               f"time.{said}")
            ran = record.model_copy(update={"ran_at": datetime.now(UTC)})
            try:
                await store.kv.update(approval_id, ran.to_bytes(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            if tool_use_id:
                self.running[tool_use_id] = approval_id
            if self.timeline is not None:
                how = (f"as edited by {record.decided_by}" if record.original_args is not None
                       else "as proposed")
                self.timeline.add("notice", text=f"approved call {action} runs {how}")
            return Verdict("allow", updated_input=record.args)
        return Verdict("deny", f"{action}: its approval kept changing; not run")

    async def ran(self, tool_use_id: str | None, response: Any) -> None:
        """Keep what an approved call returned in its record: a session resumed again after a
        crash is told it instead of running the call twice."""
        approval_id = self.running.pop(tool_use_id or "", None)
        if approval_id is None:
            return
        text = response if isinstance(response, str) else json.dumps(response, default=str)
        store = ApprovalStore(self.bus, self.redact)
        for _ in range(5):
            got = await store.get(approval_id)
            if got is None:
                return
            record, revision = got
            done = record.model_copy(update={"result": self.redact(text)[:4000]})
            try:
                await store.kv.update(approval_id, done.to_bytes(), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue

    async def _propose(self, store: ApprovalStore, approval_id: str, tool: str,
                       tool_input: dict[str, Any], action: str, args: dict[str, Any],
                       tool_use_id: str | None, session_id: str | None) -> ApprovalRecord:
        now = datetime.now(UTC)
        is_proposal = tool == PROPOSE_TOOL
        reason = str(tool_input.get("reason", "")) if is_proposal else f"the agent called {tool}"
        artifact = tool_input.get("artifact") if is_proposal else None
        record = ApprovalRecord(
            id=approval_id, task=self.task.id, run_id=self.run_id, action=action, args=args,
            reason=self.redact(reason)[:1000], artifact=str(artifact) if artifact else None,
            expires_at=now + timedelta(minutes=self.task.approval_timeout_minutes),
            tool=tool, tool_input=json.loads(self.redact(json.dumps(tool_input))),
            tool_use_id=tool_use_id, session_id=session_id)
        stored = await store.propose(record)
        if self.timeline is not None:
            self.timeline.add("approval", id=stored.id, action=action, status=stored.status,
                              step=self.step)
        return stored

    def _pause(self, record: ApprovalRecord) -> Verdict:
        self.paused = record
        return Verdict("defer", f"{record.action} waits for a person's approval ({record.id})")


def refusal(record: ApprovalRecord) -> str:
    """What the agent is told about a call a person rejected or let expire."""
    if record.status == "expired":
        return (f"{record.action} was not approved in time (approval {record.id} expired): it did "
                "not run. Do not try it another way.")
    note = f": {record.note}" if record.note else ""
    return (f"{record.action} was rejected by {record.decided_by}{note}. It did not run. Do not "
            "try it another way.")
