"""Runs parked at a gated call: waiting for a person, and how they go on once one decides.

A session that reaches a gated call stops there (gate.py); the run is parked as
`awaiting_approval` in the ledger, holding no worker. The decision queues the run again, and
whichever worker takes it restores the session's transcript from NATS and resumes it: the
approved call runs, or the agent is told why not (or the task ends, if it says so).
"""

from __future__ import annotations

import logging

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.events import AwaitingApproval
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from koda.shared.secrets import Redactor
from koda.shared.settings import KodaSettings
from koda.shared.tasks import Task

from .gate import RESUME_PROMPT, ApprovalGate, refusal
from .ledger import Claim, Ledger
from .options import config_dir
from .pipeline import PausedSession, RunOutcome
from .session_store import NatsSessionStore, call_answered
from .timeline import Timeline

log = logging.getLogger(__name__)


class PausedRuns:
    def __init__(self, bus: Bus, ledger: Ledger, sessions: NatsSessionStore, layout: HomeLayout,
                 settings: KodaSettings, redact: Redactor, instance: str) -> None:
        self.bus, self.ledger, self.sessions = bus, ledger, sessions
        self.layout, self.settings, self.redact, self.instance = layout, settings, redact, instance

    async def still_waiting(self, request: RunRequest) -> bool:
        """True for a run paused at a gated call nobody has decided on yet."""
        found = await self.ledger.get(request.run_id)
        if found is None or found[0].status != "awaiting_approval" or not found[0].approval_id:
            return False
        got = await ApprovalStore(self.bus, self.redact).get(found[0].approval_id)
        if got is not None and got[0].status == "pending":
            log.info("run waits for approval %s; delivery dropped", found[0].approval_id,
                     extra={"run_id": request.run_id})
            return True
        return False

    async def decided(self, claim: Claim, task: Task, timeline: Timeline) -> PausedSession | str:
        """How a paused session goes on: resumed (its transcript restored from NATS into this
        worker's CLI folder), or, for a rejection the task ends on, the reason it ends."""
        entry = claim.entry
        assert entry.session_id and entry.approval_id
        got = await ApprovalStore(self.bus, self.redact).get(entry.approval_id)
        record = got[0] if got else None
        if record is not None and record.status in ("rejected", "expired") \
                and task.on_rejection == "end":
            timeline.add("notice", text=f"run ends: {refusal(record)}")
            return refusal(record)
        entries = await self.sessions.restore(entry.session_id, self.layout.root,
                                              config_dir(self.settings))
        answered = record is not None and record.tool_use_id is not None \
            and call_answered(entries, record.tool_use_id)
        status = record.status if record else "gone"
        timeline.add("notice", text=f"approval {entry.approval_id} {status}: session "
                     f"{entry.session_id} resumes on {self.instance}")
        return PausedSession(entry.session_id, RESUME_PROMPT if answered else None)

    def saved_drafts(self, run_id: str) -> list[str]:
        """What the paused session saved before it stopped: it belongs to this run's record too."""
        drafts = self.layout.drafts / run_id
        return sorted(p.relative_to(self.layout.root).as_posix() for p in drafts.glob("*")
                      if p.is_file() and not p.is_symlink())

    async def park(self, task: Task, claim: Claim, outcome: RunOutcome, gate: ApprovalGate,
                   timeline: Timeline) -> None:
        """The session stopped at a gated call: the run waits, holding nothing (the delivery
        is acknowledged; the decision queues the run again)."""
        record = gate.paused
        assert record is not None
        await self.ledger.update(claim, status="awaiting_approval", approval_id=record.id,
                                 session_id=outcome.session_id or record.session_id, error=None)
        timeline.add("notice", text=f"waiting for approval {record.id} ({record.action})")
        await self.bus.emit(self.bus.event(
            "run.awaiting_approval", f"{task.id} waits for approval of {record.action}"[:300],
            task=task.id, run_id=claim.entry.run_id,
            data=AwaitingApproval(approval_id=record.id, action=record.action, tool=record.tool,
                                  session_id=outcome.session_id or record.session_id,
                                  expires_at=record.expires_at)))
