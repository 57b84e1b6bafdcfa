"""The data of audit events (`Event.data`), one model per kind, shared by producers and consumers.

On the wire `data` stays a JSON object (docs/contracts.md): a producer builds the model and
`Bus.event` turns it into that object (fields that are None are left out); a consumer parses it
with `Model.of(event)`. A reader ignores fields it does not know and takes a missing field as its
default, so older and newer services share a bus. Data that does not fit its model (a field of
the wrong type) raises `BadEvent` naming the event, its service and run, and the field: the
consumer logs it and skips that event rather than crash or guess.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import KodaError
from .messages import Event


class BadEvent(KodaError):
    """An event whose data does not fit the model of its kind."""


class EventData(BaseModel):
    """Base of every event's data: unknown fields ignored, None left off the wire."""

    model_config = ConfigDict(extra="ignore")
    #: The event kinds whose data this model reads.
    kinds: ClassVar[frozenset[str]] = frozenset()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def of(cls, event: Event) -> Self:
        """The event's data as this model; `BadEvent` when it is of another kind or does not fit."""
        where = f"{event.event} event from {event.service}" + (
            f" for {event.run_id}" if event.run_id else "")
        if cls.kinds and event.event not in cls.kinds:
            raise BadEvent(f"{where}: not one of {', '.join(sorted(cls.kinds))}")
        try:
            return cls.model_validate(event.data)
        except ValidationError as exc:
            problems = "; ".join(f"data.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                                 for err in exc.errors())
            raise BadEvent(f"{where}: {problems}") from exc


class RunEnded(EventData):
    """`run.finished` (outcome done) and `run.failed` (every other end): the worker's report."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.finished", "run.failed"})
    outcome: str = Field(default="", description="done, failed, turn_cap, refused, cancelled; "
                         "when missing, what the event kind says.")
    turns: int | None = None
    cost_usd: float | None = None
    duration_s: float | None = None
    artifacts: list[str] = Field(default_factory=list)
    result: str = Field(default="", description="The final text, redacted, cut at 1,800 characters.")
    error: str | None = None
    reply_to: str | None = Field(default=None, description="Copied from the request.")
    steps: list[str] = Field(default_factory=list)
    limit: str | None = Field(default=None, description="spend_day or spend_month, for `refused`.")
    attempt: int | None = None
    attempts: int | None = None
    cause: str | None = Field(default=None, description="Why no retry can help.")
    resource: str | None = Field(default=None, description="disk_full, read_only, ... for cause "
                                 "`resource`.")

    @classmethod
    def of(cls, event: Event) -> Self:
        ended = super().of(event)
        if not ended.outcome:
            ended.outcome = "done" if event.event == "run.finished" else "failed"
        return ended

    @property
    def done(self) -> bool:
        return self.outcome == "done"


class RunStarted(EventData):
    kinds: ClassVar[frozenset[str]] = frozenset({"run.started"})
    trigger: str | None = None
    step: int = 0
    resumed: bool = False
    steps_done: list[str] = Field(default_factory=list)


class RunRetrying(EventData):
    """A failed attempt goes back for later."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.retrying"})
    attempt: int
    attempts: int
    error: str = ""
    next_in_s: float
    next_attempt_at: datetime | None = None
    note: str = Field(default="", description="attempt 1/3 failed: reason; next in 120 s")


class RunSkipped(EventData):
    """A fire the scheduler skipped (overlap) or a held run the worker dropped (admission)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.skipped"})
    scheduled_for: datetime | None = None
    reason: str = ""
    trigger: str | None = None
    overlap: str | None = None


class RunRequested(EventData):
    """A person queued a manual or chat run."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.requested"})
    trigger: str
    requested_by: str


class CancelRequested(EventData):
    kinds: ClassVar[frozenset[str]] = frozenset({"run.cancel_requested"})
    requested_by: str | None = None


class ApprovalEvent(EventData):
    """`approval.requested`, `approval.decided`, `approval.reminder`: the record itself is in the
    approvals KV under `approval_id`."""

    kinds: ClassVar[frozenset[str]] = frozenset(
        {"approval.requested", "approval.decided", "approval.reminder"})
    approval_id: str
    action: str | None = None
    reason: str | None = None
    artifact: str | None = None
    expires_at: datetime | None = None
    status: str | None = None
    decided_by: str | None = None
    note: str | None = None
    #: An edited approval: what was proposed and what was approved instead.
    edited: bool | None = None
    original_args: dict[str, Any] | None = None
    args: dict[str, Any] | None = None


class Notify(EventData):
    """`agent.notify`: a note the agent sends its people (the worker's notify tool)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"agent.notify"})
    text: str = ""


class JobDone(EventData):
    """What `action.done` and `scrape.done` share: the watchdog reads failed ones."""

    kinds: ClassVar[frozenset[str]] = frozenset({"action.done", "scrape.done"})
    ok: bool = True
    outcome: str | None = None
    error: str | None = None
    site: str | None = None
    needs_human: bool = False


class ActionDone(JobDone):
    kinds: ClassVar[frozenset[str]] = frozenset({"action.done"})
    name: str
    idempotency_key: str
    exit_code: int | None = None
    approval_id: str | None = None
    auth_retry: bool = False


class ScrapeDone(JobDone):
    kinds: ClassVar[frozenset[str]] = frozenset({"scrape.done"})
    job_id: str
    refresh: bool = False
    screenshot: str | None = None
    duration_s: float | None = None
