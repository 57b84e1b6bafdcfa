"""A run's transcript: what the agent did, turn by turn, as JSON lines under the state folder.

The worker writes `<state dir>/transcripts/<run id>.jsonl` (services/worker/timeline.py); the
console and `koda show` read it. It lives in the state folder, not the agent home, so the agent
can neither read earlier transcripts nor rewrite its own. Every text in it was redacted of
`.env` values before it was written, and long texts are folded (cut, with their full length).

One entry per line, each `{"at": ISO time, "kind": ..., ...}`. Kinds and their fields:
`start` (trigger, attempt, resumed, step), `step` (step, index), `text` (turn, text),
`tool` (turn, id, name, input), `tool_result` (id, name, output, is_error), `turn` (turn,
input_tokens, output_tokens), `session` (outcome, turns, cost_usd, input_tokens, output_tokens,
duration_s, error), `approval` (id, action, status), `artifact` (path), `notice` (text),
`cancel` (by), `end` (outcome, error, turns, cost_usd). Readers ignore kinds and fields they
do not know.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
#: Longest text kept whole in an entry; longer ones are cut and marked `folded: <full length>`.
FOLD_CHARS = 4000


def transcripts_dir(state_dir: Path) -> Path:
    return state_dir / "transcripts"


def transcript_path(state_dir: Path, run_id: str) -> Path | None:
    """The transcript file of `run_id`, or None for an id that is not a safe file name."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        return None
    return transcripts_dir(state_dir) / f"{run_id}.jsonl"


def fold(text: str, limit: int = FOLD_CHARS) -> tuple[str, int | None]:
    """`text` cut to `limit` characters, and its full length when it was cut."""
    if len(text) <= limit:
        return text, None
    return text[:limit], len(text)


def read_entries(state_dir: Path, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """Entries from line `after` on (0 = all); a half-written last line is left for next time."""
    path = transcript_path(state_dir, run_id)
    if path is None:
        return []
    try:
        with path.open("rb") as f:
            data = f.read()
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    for line in lines[after:-1] if after < len(lines) else []:  # the last piece lacks its newline
        try:
            item = json.loads(line)
        except ValueError:
            item = {"kind": "notice", "text": "(an unreadable line)"}
        out.append(item if isinstance(item, dict) else {"kind": "notice", "text": str(item)})
    return out


def prune(state_dir: Path, max_age_days: float, now: float | None = None) -> int:
    """Delete transcripts not written for `max_age_days`; returns how many went."""
    folder = transcripts_dir(state_dir)
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - max_age_days * 86400
    gone = 0
    for path in folder.glob("*.jsonl"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                gone += 1
        except OSError:
            continue
    return gone


def turn_costs(entries: list[dict[str, Any]]) -> dict[int, float]:
    """Each `turn` entry's share of its session's cost (by index in `entries`), split by tokens.

    The API reports cost per session, tokens per turn; a turn's cost is its session's cost in
    proportion to the turn's tokens, which is right to the cent for one model.
    """
    out: dict[int, float] = {}
    pending: list[tuple[int, int]] = []
    for index, entry in enumerate(entries):
        if entry.get("kind") == "turn":
            tokens = int(entry.get("input_tokens") or 0) + int(entry.get("output_tokens") or 0)
            pending.append((index, tokens))
        elif entry.get("kind") == "session":
            total = sum(t for _, t in pending)
            cost = float(entry.get("cost_usd") or 0.0)
            for turn_index, tokens in pending:
                out[turn_index] = cost * tokens / total if total else 0.0
            pending = []
    return out
