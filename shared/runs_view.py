"""Runs as a person sees them, for the console's Runs page and `koda runs`: finished runs from
their records (`RunRecord`, shared/run_record.py) merged with live ones from the ledger (`runs`
KV), running first, then newest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from koda.shared.messages import RunLedgerEntry
from koda.shared.run_record import RunRecord

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


def from_record(record: RunRecord) -> RunSummary:
    return RunSummary(
        run_id=record.run_id, task=record.task, outcome=record.outcome, trigger=record.trigger,
        started_at=record.started_at, finished_at=record.finished_at,
        duration_s=record.duration_s, turns=record.turns, cost_usd=record.cost_usd,
        input_tokens=record.input_tokens, output_tokens=record.output_tokens,
        error=record.error, result=record.result or None)


def merge(records: dict[str, RunRecord], ledger: list[RunLedgerEntry],
          now: datetime | None = None) -> list[RunSummary]:
    """Records plus the ledger's live runs (which have no record yet): running first, newest next."""
    now = now or datetime.now(UTC)
    rows = {run_id: from_record(record) for run_id, record in records.items()}
    for entry in ledger:
        row = rows.get(entry.run_id)
        if entry.status in LIVE and (row is None or row.outcome in LIVE):
            started = _started_of(entry)
            rows[entry.run_id] = RunSummary(
                run_id=entry.run_id, task=entry.task, outcome=entry.status, started_at=started,
                duration_s=(now - started).total_seconds() if started else None,
                error=entry.error, attempt=entry.attempt,
                step=entry.step, live=True, max_attempts=entry.attempts,
                next_attempt_at=entry.next_attempt_at)
        elif row is not None and row.attempt is None:
            row.attempt = entry.attempt
    return sorted(rows.values(), key=lambda r: (
        not r.live, -(r.started_at or r.finished_at or now).timestamp(), r.run_id))


def _started_of(entry: RunLedgerEntry) -> datetime | None:
    """A live run's start: the run id's epoch ms (the ledger keeps no start time)."""
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
