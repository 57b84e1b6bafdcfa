"""What a finished run leaves on disk: `data/runs/<run id>.json` and a line in the daily log.

Both are idempotent on the run id (the record is replaced whole, the log line is written once),
so a run finished again after a crash between the two still appears exactly once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from koda.shared.home import HomeLayout


class StepRecord(BaseModel):
    id: str
    outcome: str
    turns: int = 0
    cost_usd: float = 0.0
    continuations: int = 0
    artifact: str | None = None


class RunRecord(BaseModel):
    """One run, as `data/runs/<run id>.json`."""

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


def record_path(layout: HomeLayout, run_id: str) -> Path:
    return layout.runs / f"{run_id}.json"


def write_record(layout: HomeLayout, record: RunRecord) -> Path:
    """Write the run record atomically (a reader never sees half a file)."""
    path = record_path(layout, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, record.model_dump_json(indent=1))
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` whole or not at all: a full disk leaves neither half a file nor a `.tmp`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def daily_log_line(record: RunRecord) -> str:
    summary = " ".join((record.error or record.result or "").split())[:160]
    artifacts = f", {len(record.artifacts)} artifact(s)" if record.artifacts else ""
    return (f"- {record.finished_at:%H:%M} `{record.run_id}` **{record.task}**: {record.outcome}, "
            f"{record.turns} turns, ${record.cost_usd:.4f}, {record.duration_s:.1f}s{artifacts}"
            + (f" — {summary}" if summary else "") + "\n")


def append_daily_log(layout: HomeLayout, record: RunRecord) -> Path:
    """Add the run's line to `data/daily-logs/<date>.md` unless it is already there."""
    path = layout.daily_logs / f"{record.finished_at:%Y-%m-%d}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = f"`{record.run_id}`"
    if path.exists() and marker in path.read_text(encoding="utf-8"):
        return path
    new = not path.exists()
    with path.open("a", encoding="utf-8") as f:
        if new:
            f.write(f"# {record.finished_at:%Y-%m-%d}\n\n")
        f.write(daily_log_line(record))
    return path
