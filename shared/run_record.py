"""A finished run's record, `data/runs/<run id>.json`: the worker writes it, the console, `koda`,
the watchdog (self-heal spend) and the worker's forecast read it, all through this one type.

Readers skip a record that does not fit (being written, from another version, not ours) and go
on with the rest; fields a reader does not know are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .transcript import RUN_ID


class StepRecord(BaseModel):
    id: str
    outcome: str
    turns: int = 0
    cost_usd: float = 0.0
    continuations: int = 0
    artifact: str | None = None


class RunRecord(BaseModel):
    """One run, as `data/runs/<run id>.json`."""

    model_config = ConfigDict(extra="ignore")
    run_id: str
    task: str
    trigger: str
    outcome: str
    started_at: datetime
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0
    turns: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    artifacts: list[str] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    result: str = ""
    error: str | None = None
    deliveries: int = 1


def record_path(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f"{run_id}.json"


def read_record(runs_dir: Path, run_id: str) -> RunRecord | None:
    """The run's record, or None when it has none (yet) or it cannot be read as one."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        return None
    try:
        return RunRecord.model_validate_json(record_path(runs_dir, run_id).read_bytes())
    except (OSError, ValidationError):
        return None


def read_records(runs_dir: Path, limit: int = 500, pattern: str = "*") -> dict[str, RunRecord]:
    """The newest `limit` records (of run ids matching `pattern`) by run id, newest first (by file
    time, so a big folder stays quick)."""
    if not runs_dir.is_dir():
        return {}
    files = []
    for path in runs_dir.glob(f"{pattern}.json"):
        run_id = path.name[:-5]
        if RUN_ID.match(run_id):
            try:
                files.append((path.stat().st_mtime, run_id))
            except OSError:
                continue
    out: dict[str, RunRecord] = {}
    for _, run_id in sorted(files, reverse=True)[:limit]:
        record = read_record(runs_dir, run_id)
        if record is not None:
            out[run_id] = record
    return out
