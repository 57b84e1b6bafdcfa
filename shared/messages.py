"""Every message and record on the bus, as versioned pydantic models.

These are the wire contract (docs/architecture.md, docs/contracts.md). Evolve them only by adding
optional fields; a reader ignores fields it does not know, so old and new services can share a
bus during an upgrade.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The newest wire schema this code understands. A message from a newer writer is refused
#: (terminated with `message.failed`), never half-understood.
SCHEMA_VERSION = 1
#: A run id is a KV key, a file name (`data/runs/<run id>.json`) and part of subjects: dotted
#: tokens of letters, digits, `_` and `-`.
RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,100}(\.[A-Za-z0-9_-]{1,100}){0,4}$"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every wire model: a schema version, unknown fields ignored, JSON on the wire."""

    # Each model builds its validator on first use, not at import: a restarted service
    # heartbeats ~0.2 s sooner (it uses a few of these models, and imports all of them).
    model_config = ConfigDict(extra="ignore", defer_build=True)
    #: The subject family this model travels on, for documentation and typed helpers.
    kind: ClassVar[str] = ""
    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if not 1 <= value <= SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is not one this service understands "
                             f"(1 to {SCHEMA_VERSION})")
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        return cls.model_validate_json(data)


Trigger = Literal["cron", "catch_up", "manual", "chat", "retry", "watchdog", "learnings"]
#: The letter before the epoch ms in a run id, per trigger; a cron or catch-up fire has none.
RUN_ID_MARKS: dict[str, str] = {"manual": "m", "chat": "c", "watchdog": "w", "learnings": "l"}


def new_run_id(task: str, trigger: Trigger, at: datetime) -> str:
    """The run id of docs/contracts.md: `<task>.<mark><epoch ms>` (`<task>.<epoch ms>` for a
    fire, whose JetStream message id is `<task>:<epoch ms>`). KV-key safe, ordered by time."""
    return f"{task}.{RUN_ID_MARKS.get(trigger, '')}{round(at.timestamp() * 1000)}"


def content_key(*parts: Any) -> str:
    """12 hex of the sha256 of `parts` as canonical JSON: the same request, the same key (an
    approval id, an idempotency key, a job id that a resumed step reproduces)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class RunRequest(Message):
    """Run a task now: published on `koda.runs.<task>` to the RUNS work queue."""

    kind: ClassVar[str] = "runs"
    task: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    scheduled_for: datetime
    trigger: Trigger = "cron"
    attempt: int = 1
    requested_by: str | None = None
    prompt: str | None = Field(default=None, description="Overrides the task prompt (chat, heal).")
    context: dict[str, Any] = Field(default_factory=dict, description="Untrusted data attached.")
    reply_to: str | None = Field(default=None, description="Where to report (a Discord thread).")
    resume_approval: str | None = Field(
        default=None, description="Set when a decision wakes a run paused on this approval.")


class ActionRequest(Message):
    """Run a helper script or an approved action: `koda.actions.<name>` on the ACTIONS queue."""

    kind: ClassVar[str] = "actions"
    name: str
    idempotency_key: str
    args: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    approval_id: str | None = None
    requested_by: str = "agent"
    reply_subject: str | None = None


class ActionResult(Message):
    """What an action did; its output is already redacted of secrets."""

    name: str
    idempotency_key: str
    ok: bool
    exit_code: int | None = None
    output: str = ""
    error: str | None = None
    duplicate: bool = False
    finished_at: datetime = Field(default_factory=utcnow)
    cause: str | None = Field(default=None, description="Why it failed, when no retry can help: "
                              "missing_secret, no_handler, config, unapproved.")


class ScrapeRequest(Message):
    """A browser job for one site: `koda.scrape.<site>` on the SCRAPE queue."""

    kind: ClassVar[str] = "scrape"
    site: str
    job_id: str
    url: str | None = None
    selectors: dict[str, str] = Field(default_factory=dict)
    screenshot: bool = False
    refresh: bool = Field(default=False, description="Log in again and save fresh cookies.")
    reply_subject: str | None = None


class ScrapeResult(Message):
    """What a browser job found. `untrusted` is always true: web content is data, never orders."""

    site: str
    job_id: str
    ok: bool
    text: str = ""
    extracted: dict[str, str] = Field(default_factory=dict)
    screenshot_path: str | None = None
    error: str | None = None
    untrusted: Literal[True] = True
    needs_human: bool = Field(default=False, description="The site's login failed; a person must act.")


Severity = Literal["info", "warning", "error", "critical"]


class Event(Message):
    """An audit event on `koda.events.<kind>`: the console's feed and Discord's reports."""

    kind: ClassVar[str] = "events"
    event: str = Field(description="Dotted kind, e.g. run.finished, message.failed, alert.")
    service: str
    at: datetime = Field(default_factory=utcnow)
    severity: Severity = "info"
    summary: str = ""
    task: str | None = None
    run_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


ApprovalStatus = Literal["pending", "approved", "rejected", "expired"]


class ApprovalRecord(Message):
    """One proposed public or destructive action waiting for (or past) a human decision."""

    id: str
    task: str
    run_id: str
    action: str
    args: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    artifact: str | None = None
    status: ApprovalStatus = "pending"
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    reminded: bool = False
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = Field(default=None, description="What the person who decided added.")
    dispatched: bool = Field(default=False, description="The approved action was published.")
    idempotency_key: str | None = None
    discord_channel_id: int | None = Field(default=None, description="Where the gateway asked.")
    discord_message_id: int | None = Field(default=None, description="The message with buttons.")
    signature: str | None = Field(
        default=None, description="The gateway's Ed25519 signature of the decision "
        "(shared/approval_keys.py); actions runs nothing for a decision without a valid one.")
    # A paused tool call (docs/approvals.md): the run waits, and a decision resumes its session.
    tool: str | None = Field(default=None, description="The paused tool call's tool name.")
    tool_input: dict[str, Any] | None = Field(default=None, description="Its input as the agent gave it.")
    tool_use_id: str | None = None
    session_id: str | None = Field(default=None, description="The session to resume.")
    original_args: dict[str, Any] | None = Field(
        default=None, description="The args as proposed, when the approver edited them.")
    woken: bool = Field(default=False, description="The paused run was asked to resume.")
    ran_at: datetime | None = Field(default=None, description="When the approved call was let run.")
    result: str | None = Field(default=None, description="What the approved call returned "
                               "(redacted, at most 4,000 characters), for a session resumed again.")


class Heartbeat(Message):
    """A service instance saying it is alive; kept in the `health` KV with a TTL."""

    service: str
    instance: str
    pid: int
    started_at: datetime
    at: datetime = Field(default_factory=utcnow)
    port: int | None = None
    version: str = "0.1.0"
    status: Literal["ok", "degraded", "stopping"] = "ok"
    detail: str = ""


RunStatus = Literal[
    "claimed", "running", "awaiting_approval", "done", "failed", "turn_cap", "paused", "cancelled"
]


#: Ledger statuses after which a run never changes again.
RUN_TERMINAL: frozenset[str] = frozenset({"done", "failed", "turn_cap", "cancelled"})


class RunLedgerEntry(Message):
    """The `runs` KV record a worker keeps so a redelivered run resumes where it stopped."""

    run_id: str
    task: str
    status: RunStatus
    step: int = 0
    steps_done: list[str] = Field(default_factory=list)
    attempt: int = 1
    worker: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    error: str | None = None
    claims: int = Field(default=0, description="Times the run was found cut short mid-run.")
    continuations: int = Field(default=0, description="Turn-cap continuations used in this step.")
    attempts: int | None = Field(default=None, description="Attempts the task allows (retries.max + 1).")
    next_attempt_at: datetime | None = Field(default=None, description="When a failed attempt is retried.")
    cause: str | None = Field(default=None, description="Why it failed when no retry can help "
                              "(config, missing_secret, no_handler, unknown_task, resource).")
    fence: int = Field(default=0, description="Fencing token: +1 at every claim. An attempt "
                       "whose token is no longer the ledger's may not act (tools, actions, record).")
    approval_id: str | None = Field(default=None, description="The approval a paused run waits on.")
    session_id: str | None = Field(default=None, description="The paused session (transcript in "
                                   "the SESSIONS stream).")


class RateWindow(Message):
    """The subscription window as the last `RateLimitEvent` reported it."""

    status: str = "allowed"  # allowed, allowed_warning, rejected
    resets_at: datetime | None = None
    utilization: float | None = None  # 0..1
    window_type: str | None = None  # five_hour, seven_day, ...
    seen_at: datetime = Field(default_factory=utcnow)


class LastGoodConfig(Message):
    """`<file stem>` in the `config` KV (e.g. `tasks`): the newest version of a config file that
    parsed, shared by every service that reads it, so a service restarting on a broken file runs
    the newest good version any service saw, not its own older copy."""

    text: str
    mtime_ns: int = Field(description="the source file's mtime when this version was read.")
    sha256: str
    seen_by: str = Field(description="the service that read it from the file.")
    seen_at: datetime = Field(default_factory=utcnow)


class SelfHealRecord(Message):
    """`selfheal` in the `limits` KV: when the watchdog queued self-heal runs and last alerted
    each cause, so its hourly bounds hold across its own restarts."""

    queued: list[datetime] = Field(default_factory=list)
    alerted: dict[str, datetime] = Field(default_factory=dict, description="cause to last alert.")


class LimitsRecord(Message):
    """The `limits` KV: a rate-limit pause every worker honours, and running spend."""

    pause_until: datetime | None = None
    pause_reason: str | None = None
    spend_day: dict[str, float] = Field(default_factory=dict, description="YYYY-MM-DD to USD.")
    spend_month: dict[str, float] = Field(default_factory=dict, description="YYYY-MM to USD.")
    window: RateWindow | None = Field(default=None, description="The last RateLimitEvent seen.")
    forecast_alerted: str | None = Field(
        default=None, description="YYYY-MM whose spend forecast past the credit was alerted.")


class AdmissionRecord(Message):
    """`admission.<task>` in the `limits` KV: the last admission decision for the task."""

    task: str
    run_id: str
    priority: str = "normal"
    decision: str  # run, reduce, wait
    reason: str = ""
    wait_until: datetime | None = None
    max_turns: int | None = None
    model: str | None = None
    at: datetime = Field(default_factory=utcnow)


class TaskPause(Message):
    """A paused task: `pause.<task>` in the `scheduler` KV. The scheduler fires nothing for it
    until a person (console, Discord, `koda`) deletes the key."""

    task: str
    paused_by: str
    reason: str = ""
    at: datetime = Field(default_factory=utcnow)


class ActionRecord(Message):
    """The `actions` KV record of one idempotency key: claimed while a script runs, then the
    result that every repeat of the key gets back without anything running again."""

    idempotency_key: str
    name: str
    status: Literal["running", "done"]
    instance: str
    started_at: datetime = Field(default_factory=utcnow)
    result: ActionResult | None = None


def action_key(idempotency_key: str) -> str:
    """The `actions` KV key of an idempotency key: KV keys allow few characters (`approval:<id>`
    has a colon), so a digest of it."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


class SiteNeedsHuman(Message):
    """A site whose login failed even after a refresh: `needs_human.<site>` in the `scraper` KV.
    Jobs for it fail fast until a person deletes the key (`koda site clear <site>`)."""

    site: str
    reason: str
    at: datetime = Field(default_factory=utcnow)
    job_id: str | None = None


class LeaderRecord(Message):
    """`leader` in the `scheduler` KV: which scheduler instance leads, until when (unix s)."""

    instance: str
    expires_at: float


class SchedulerFire(Message):
    """The `scheduler` KV record of a task's last fire."""

    task: str
    last_fire: datetime
    run_id: str
    decision: str | None = Field(
        default=None, description="fired, skipped (overlap), paused, or baseline (first seen).")


class FailedMessage(Message):
    """The data of a `message.failed` event: a message that could not be handled."""

    stream: str
    subject: str
    deliveries: int
    error: str
    stream_seq: int | None = None
    payload_preview: str = ""
