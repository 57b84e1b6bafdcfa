"""What a finished run leaves on disk: `data/runs/<run id>.json` and a line in the daily log.

Both are idempotent on the run id (the record is replaced whole, the log line is written once),
so a run finished again after a crash between the two still appears exactly once.
"""

from __future__ import annotations

from pathlib import Path

from koda.shared.home import HomeLayout
from koda.shared.run_record import RunRecord, record_path
from koda.shared.safe_write import append_text, read_bytes, write_file


def write_record(layout: HomeLayout, record: RunRecord) -> Path:
    """Write the run record atomically (a reader never sees half a file)."""
    rel = record_path(layout.runs, record.run_id).relative_to(layout.root).as_posix()
    return write_file(layout.root, rel, record.model_dump_json(indent=1))


def daily_log_line(record: RunRecord) -> str:
    summary = " ".join((record.error or record.result or "").split())[:160]
    artifacts = f", {len(record.artifacts)} artifact(s)" if record.artifacts else ""
    return (f"- {record.finished_at:%H:%M} `{record.run_id}` **{record.task}**: {record.outcome}, "
            f"{record.turns} turns, ${record.cost_usd:.4f}, {record.duration_s:.1f}s{artifacts}"
            + (f" — {summary}" if summary else "") + "\n")


def append_daily_log(layout: HomeLayout, record: RunRecord) -> Path:
    """Add the run's line to `data/daily-logs/<date>.md` unless it is already there."""
    path = layout.daily_logs / f"{record.finished_at:%Y-%m-%d}.md"
    rel = path.relative_to(layout.root).as_posix()
    current = read_bytes(layout.root, rel)
    if current is not None and f"`{record.run_id}`".encode() in current:
        return path
    head = f"# {record.finished_at:%Y-%m-%d}\n\n" if current is None else ""
    return append_text(layout.root, rel, head + daily_log_line(record))
