"""Runs as a person sees them, for the console's Runs page and `koda runs`: finished runs from
their records (`data/runs/<run id>.json`) merged with live ones from the ledger (`runs` KV),
running first, then newest. Readers tolerate fields they do not know and records that lack some.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from koda.shared.messages import RunLedgerEntry
from koda.shared.transcript import RUN_ID

LIVE = ("claimed", "running", "awaiting_approval", "paused")
#: Outcomes by the colour a person reads them in.
GOOD, BAD, WARN = {"done"}, {"failed", "refused", "error"}, {"turn_cap", "cancelled", "paused"}


@dataclass
class RunSummary:
    run_id: str
    task: str
    outcome: str  # the record's outcome, or the ledger's status while the run is live
    trigger: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    turns: int | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    attempt: int | None = None
    step: int | None = None
    live: bool = False
    result: str | None = None
    max_attempts: int | None = None  # when the ledger or record says (retries)
    next_attempt_at: datetime | None = None

    @property
    def tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        data["tokens"] = self.tokens
        return data


def colour(outcome: str) -> str:
    """ok, bad, warn or live: the class a run's outcome is shown with."""
    if outcome in GOOD:
        return "ok"
    if outcome in WARN:
        return "warn"
    if outcome in LIVE or outcome == "queued":
        return "live"
    return "bad" if outcome in BAD or outcome else "muted"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _num(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    try:
        return kind(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def from_record(data: dict[str, Any], run_id: str) -> RunSummary:
    return RunSummary(
        run_id=run_id, task=str(data.get("task") or run_id.split(".")[0]),
        outcome=str(data.get("outcome") or data.get("status") or "?"),
        trigger=data.get("trigger"), started_at=_time(data.get("started_at")),
        finished_at=_time(data.get("finished_at")), duration_s=_num(data, "duration_s", float),
        turns=_num(data, "turns", int), cost_usd=_num(data, "cost_usd", float),
        input_tokens=_num(data, "input_tokens", int), output_tokens=_num(data, "output_tokens", int),
        error=data.get("error"), attempt=_num(data, "attempt", int),
        result=str(data["result"]) if data.get("result") else None,
        max_attempts=_num(data, "attempts", int))


def read_records(runs_dir: Path, limit: int = 500) -> dict[str, dict[str, Any]]:
    """The newest `limit` run records by run id (by file time, so a big folder stays quick)."""
    if not runs_dir.is_dir():
        return {}
    files = []
    for path in runs_dir.glob("*.json"):
        run_id = path.name[:-5]
        if RUN_ID.match(run_id):
            try:
                files.append((path.stat().st_mtime, run_id, path))
            except OSError:
                continue
    out: dict[str, dict[str, Any]] = {}
    for _, run_id, path in sorted(files, reverse=True)[:limit]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out[run_id] = data
    return out


def merge(records: dict[str, dict[str, Any]], ledger: list[RunLedgerEntry],
          now: datetime | None = None) -> list[RunSummary]:
    """Records plus the ledger's live runs (which have no record yet): running first, newest next."""
    now = now or datetime.now(UTC)
    rows = {run_id: from_record(data, run_id) for run_id, data in records.items()}
    for entry in ledger:
        row = rows.get(entry.run_id)
        if entry.status in LIVE and (row is None or row.outcome in LIVE):
            started = _started_of(entry)
            rows[entry.run_id] = RunSummary(
                run_id=entry.run_id, task=entry.task, outcome=entry.status, started_at=started,
                duration_s=(now - started).total_seconds() if started else None,
                error=entry.error, attempt=entry.attempt,
                step=entry.step, live=True, trigger=getattr(entry, "trigger", None),
                max_attempts=entry.attempts,
                next_attempt_at=_when(entry.next_attempt_at))
        elif row is not None and row.attempt is None:
            row.attempt = entry.attempt
    return sorted(rows.values(), key=lambda r: (
        not r.live, -(r.started_at or r.finished_at or now).timestamp(), r.run_id))


def _when(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else _time(value)


def _started_of(entry: RunLedgerEntry) -> datetime | None:
    """A live run's start: the ledger's own field when it has one, else the run id's epoch ms."""
    started = getattr(entry, "started_at", None)
    if isinstance(started, datetime):
        return started
    stamp = entry.run_id.rsplit(".", 1)[-1].lstrip("mcwl")
    if stamp.isdigit():
        return datetime.fromtimestamp(int(stamp) / 1000, UTC)
    return entry.updated_at


def filtered(rows: list[RunSummary], task: str | None = None, outcome: str | None = None
             ) -> list[RunSummary]:
    """Rows of `task` and with `outcome` (`live` matches every run still going)."""
    out = rows
    if task:
        out = [r for r in out if r.task == task]
    if outcome == "live":
        out = [r for r in out if r.live]
    elif outcome:
        out = [r for r in out if r.outcome == outcome]
    return out


def human_duration(seconds: float | None) -> str:
    """`42s`, `3m 05s`, `2h 10m`, `3d 4h`: how a person says a duration."""
    if seconds is None:
        return "—"
    s = round(seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def human_tokens(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def human_cost(usd: float | None) -> str:
    if usd is None:
        return "—"
    if usd >= 0.1 or usd == 0:
        return f"${usd:.2f}"
    return f"${usd:.4f}".rstrip("0")
