"""tasks.json: the one place tasks are declared, its model, its JSON Schema and its loader.

The pydantic models are the source of truth; `volumes/koda/tasks.schema.json` is generated from
them (`koda schema`) and a test keeps the two equal. Loading never raises anything but
`ConfigError`, whose problems name the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import cron as cronexpr
from .configfile import parse_config, read_config_text
from .egress import domain_problem

TASK_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"
DEFAULT_MAX_TURNS = 25


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retries(_Strict):
    """How often a failed run is tried again, and how long to wait between tries."""

    max: int = Field(default=0, ge=0, le=20, description="Extra attempts after a failure.")
    backoff_seconds: float = Field(default=60.0, ge=0, description="First delay; doubles each try.")


class CatchUp(_Strict):
    """What to do with fires that fell while the scheduler was down."""

    policy: Literal["none", "latest", "all", "window"] = Field(
        default="latest",
        description="none: skip them; latest: run once; all: run each; window: each within window.",
    )
    window_minutes: int = Field(default=60, ge=1, description="For policy 'window'.")
    max_runs: int = Field(default=24, ge=1, le=1000, description="Upper bound for 'all'/'window'.")


class Step(_Strict):
    """One step of a multi-step task: its own session, its artifact saved before the next."""

    id: Annotated[str, Field(pattern=TASK_ID)]
    prompt: str = Field(min_length=1)
    skill: str | None = None
    max_turns: int | None = Field(default=None, ge=1, le=500)
    artifact: str | None = Field(default=None, description="File name of the step's output.")


class Task(_Strict):
    """One scheduled (or manual) task."""

    id: Annotated[str, Field(pattern=TASK_ID, description="Lowercase id, used in subjects.")]
    description: str = ""
    enabled: bool = True
    cron: str | None = Field(default=None, description="5 fields, 6 with seconds, or @daily etc.")
    timezone: str | None = Field(default=None, description="IANA zone; default: the file's.")
    prompt: str | None = None
    skill: str | None = Field(default=None, description="Name of skills/<name>.md.")
    steps: list[Step] | None = None
    script: str | None = Field(default=None, description="Name of a helper script to run.")
    max_turns: int = Field(default=DEFAULT_MAX_TURNS, ge=1, le=500)
    on_turn_cap: Literal["fail", "continue"] = "fail"
    max_continuations: int = Field(default=2, ge=0, le=20)
    timeout_seconds: int = Field(default=1800, ge=10, le=86400)
    max_budget_usd: float | None = Field(default=None, gt=0)
    retries: Retries = Retries()
    gated: list[str] = Field(
        default_factory=list, description="Action kinds or tool names (globs) that need approval."
    )
    allowed_domains: list[str] = Field(
        default_factory=list,
        description="Hosts the agent's Bash and WebFetch may reach (example.com, *.example.com, "
        "api.example.com:443); none by default. Local and private addresses are never reachable.")
    #: At most 30 days: paused sessions are kept in NATS for longer (bus.SESSION_RETENTION_DAYS).
    approval_timeout_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60)
    on_approval_expiry: Literal["reject"] = "reject"
    on_rejection: Literal["continue", "end"] = Field(
        default="continue", description="When a person rejects a paused tool call (or it expires): "
        "continue resumes the agent, which is told why; end finishes the run as cancelled.")
    overlap: Literal["skip", "queue_one", "allow"] = "skip"
    catch_up: CatchUp = CatchUp()
    jitter_seconds: float = Field(default=0.0, ge=0, le=3600)
    pause_after_failures: int | None = Field(default=3, ge=1)
    priority: Literal["critical", "normal", "background"] = Field(
        default="normal",
        description="critical: always admitted; normal: may run smaller when the budget is tight; "
        "background: waits for the rate-limit reset or the next day rather than touch the reserve.")
    cheaper_model: str | None = Field(
        default=None, description="Model a normal run may switch to when the budget is tight.")

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            cronexpr.parse(value)
        return value

    @field_validator("allowed_domains")
    @classmethod
    def _domains_are_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            problem = domain_problem(entry.lower())
            if problem:
                raise ValueError(f"{entry!r}: {problem}")
        return [entry.lower() for entry in value]

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str | None) -> str | None:
        if value is not None:
            _zone(value)
        return value

    @model_validator(mode="after")
    def _has_work(self) -> Task:
        if not (self.prompt or self.skill or self.steps or self.script):
            raise ValueError("a task needs one of prompt, skill, steps or script")
        if self.script and (self.steps or self.prompt or self.skill):
            raise ValueError("a script task runs only its script: drop prompt, skill and steps")
        if self.steps is not None:
            ids = [s.id for s in self.steps]
            if not ids:
                raise ValueError("steps must not be empty")
            if len(set(ids)) != len(ids):
                raise ValueError(f"step ids must be unique, got {ids}")
        return self

    def cron_spec(self) -> cronexpr.CronSpec | None:
        return cronexpr.parse(self.cron) if self.cron else None

    def zone(self, default: str) -> ZoneInfo:
        return _zone(self.timezone or default)


class TasksFile(_Strict):
    """The whole tasks.json."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    timezone: str = Field(default="UTC", description="Default IANA zone of every task.")
    tasks: list[Task] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> TasksFile:
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"duplicate task id {task.id!r}")
            seen.add(task.id)
        return self

    def get(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.id == task_id), None)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r} (use an IANA name like Europe/Berlin)") from exc


def json_schema() -> dict[str, Any]:
    """The JSON Schema editors use to complete and check tasks.json."""
    schema = TasksFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Koda tasks.json"
    return schema


def _duplicate_ids(data: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Repeated task ids, found on the raw data so they are reported with every other problem."""
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        return []
    seen: dict[str, int] = {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, task in enumerate(data["tasks"]):
        tid = task.get("id") if isinstance(task, dict) else None
        if isinstance(tid, str):
            if tid in seen:
                out.append((("tasks", i, "id"), f"duplicate task id {tid!r} (first at tasks[{seen[tid]}])"))
            else:
                seen[tid] = i
    return out


def parse_tasks(text: str, path: Path) -> TasksFile:
    """Parse tasks.json text; raises `ConfigError` listing every problem with line and field."""
    return parse_config(text, path, TasksFile, (_duplicate_ids,))


def load_tasks(path: Path) -> TasksFile:
    """Read and parse a tasks.json file."""
    return parse_tasks(read_config_text(path), path)
