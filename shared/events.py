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
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

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


#: An instant read as a datetime and written as `datetime.isoformat()` (`+00:00`), as the
#: producers wrote it before they had a model, so readers that compare strings stay true.
Instant = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str,
                                              when_used="json")]


class IncidentFields(EventData):
    """What the watchdog's incident report says (`incident.resolved`, and an `alert` with kind
    `incident.<class>`). Its extra facts (services, self-heal, healthy_pid) pass through as they
    are, None included."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    incident: str | None = None
    failure: str | None = Field(default=None, alias="class")
    reason: str | None = None
    outcome: str | None = None
    holds: bool | None = None
    actions: list[str] | None = None
    evidence: dict[str, Any] | None = None
    time_to_detect_s: float | None = None
    time_to_healthy_s: float | None = None

    def dump(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json", exclude_none=True, by_alias=True),
                **(self.model_extra or {})}


class IncidentResolved(IncidentFields):
    kinds: ClassVar[frozenset[str]] = frozenset({"incident.resolved"})


class AlertEvent(IncidentFields):
    """`alert`: something a person must see. `kind` names it (discord, sandbox_unavailable,
    spend_forecast, rate_limit, resource.<cause>, incident.<class>); the rest is what that kind
    knows."""

    kinds: ClassVar[frozenset[str]] = frozenset({"alert"})
    kind: str
    source: str | None = Field(default=None, description="The part that raised it, when not "
                               "the event's service.")
    #: discord: which problem of the bot (login, channel, ...).
    problem: str | None = None
    #: resource.<cause>: the run's error and the home it could not write.
    cause: str | None = None
    error: str | None = None
    home: str | None = None
    #: rate_limit: when agent runs start again.
    pause_until: Instant | None = None
    #: spend_forecast: the month's forecast, its cap, what is spent, the costliest tasks.
    forecast_usd: float | None = None
    limit_usd: float | None = None
    spent_usd: float | None = None
    costliest: dict[str, float] | None = None
    at: float | None = None


class HealStep(EventData):
    """`heal.step`: one thing the watchdog did (or refused) for an incident."""

    kinds: ClassVar[frozenset[str]] = frozenset({"heal.step"})
    incident: str
    step: str


class TaskToggled(EventData):
    """`task.enabled` / `task.disabled`: a person changed `enabled` in tasks.json."""

    kinds: ClassVar[frozenset[str]] = frozenset({"task.enabled", "task.disabled"})
    by: str


class TaskPaused(EventData):
    """`task.paused`: by a person, the watchdog holding a task, or the scheduler after
    `failures` failures in a row."""

    kinds: ClassVar[frozenset[str]] = frozenset({"task.paused"})
    paused_by: str
    reason: str = ""
    failures: int | None = None


class TaskResumed(EventData):
    kinds: ClassVar[frozenset[str]] = frozenset({"task.resumed"})
    resumed_by: str


class CatchUpDone(EventData):
    """`scheduler.catch_up`: what was done with the fires missed in (since, until]."""

    kinds: ClassVar[frozenset[str]] = frozenset({"scheduler.catch_up"})
    policy: str
    missed: int
    run: list[Instant] = Field(default_factory=list)
    dropped: int = 0
    since: Instant
    until: Instant
    decisions: list[str] = Field(default_factory=list)
    already_fired: int = 0


class ConfigDetail(BaseModel):
    file: str
    line: int | None = None
    field: str = ""
    message: str


class ConfigInvalid(EventData):
    """`config.invalid`: a config file did not load; the service keeps its last good copy."""

    kinds: ClassVar[frozenset[str]] = frozenset({"config.invalid"})
    file: str
    problems: list[str] = Field(default_factory=list, description="Each problem as text.")
    details: list[ConfigDetail] = Field(default_factory=list)


class AwaitingApproval(EventData):
    """`run.awaiting_approval`: a gated call paused the run (services/worker/paused_runs.py)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.awaiting_approval"})
    approval_id: str
    action: str | None = None
    tool: str | None = None
    session_id: str | None = None
    expires_at: Instant | None = None


class NeedsHuman(EventData):
    """`scrape.needs_human`: a site's login failed; its jobs fail fast until cleared."""

    kinds: ClassVar[frozenset[str]] = frozenset({"scrape.needs_human"})
    site: str
    reason: str = ""
    job_id: str | None = None
    clear_with: str | None = None


class AdmissionEvent(EventData):
    """`run.admission`: the worker's decision before a model run (docs/quota.md)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"run.admission"})
    decision: str
    reason: str = ""
    priority: str | None = None
    trigger: str | None = None
    wait_until: Instant | None = None
    max_turns: int | None = None
    model: str | None = None
