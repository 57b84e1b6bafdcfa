"""A believable week of Koda for the console: tasks, finished and running runs with their
transcripts, approvals in every state (one whose action failed), spend per day, heartbeats.

Used by the console tests and by `docs/screenshots.py`; it writes only what the services
themselves write (files in the home and state folder, records on the bus), the same shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from koda.shared.approvals import ApprovalStore, new_proposal
from koda.shared.bus import Bus
from koda.shared.events import ActionDone
from koda.shared.messages import Heartbeat, LimitsRecord, RunLedgerEntry
from koda.shared.settings import SERVICES, KodaSettings

TASKS = {
    "timezone": "Europe/Paris",
    "tasks": [
        {"id": "daily-post", "cron": "30 8 * * 1-5", "prompt": "Write and propose the daily post.",
         "gated": ["social.post"]},
        {"id": "weekly-video", "cron": "0 18 * * 5", "prompt": "Script the week's video.",
         "gated": ["video.publish"], "timezone": "America/New_York"},
        {"id": "analytics-pull", "cron": "0 */6 * * *", "prompt": "Pull the numbers."},
        {"id": "chat", "prompt": "Answer the owner."},
    ],
}


@dataclass
class Seeded:
    done_run: str
    live_run: str
    failed_run: str
    pending_approval: str
    failed_approval: str


def _transcript(state: Path, run_id: str, entries: list[dict[str, Any]], start: datetime) -> None:
    folder = state / "transcripts"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = []
    for i, e in enumerate(entries):
        lines.append(json.dumps({"at": (start + timedelta(seconds=3 * i)).isoformat(), **e}))
    (folder / f"{run_id}.jsonl").write_text("\n".join(lines) + "\n")


def _rich_entries(run_id: str, secret: str) -> list[dict[str, Any]]:
    return [
        {"kind": "start", "task": "daily-post", "trigger": "cron", "attempt": 1, "resumed": False},
        {"kind": "step", "step": "main", "index": 0},
        {"kind": "text", "turn": 1, "text": "I'll check yesterday's numbers before writing."},
        {"kind": "tool", "turn": 1, "id": "t1", "name": "Read",
         "input": {"text": json.dumps({"file_path": "data/analytics/latest.json"})}},
        {"kind": "tool_result", "id": "t1", "name": "Read", "is_error": False,
         "output": {"text": '{"followers": 1204, "posts": 33, "top": "the cron post"}'}},
        {"kind": "turn", "turn": 1, "input_tokens": 5120, "output_tokens": 210},
        {"kind": "tool", "turn": 2, "id": "t2", "name": "Bash",
         "input": {"text": json.dumps({"command": f"curl -H 'token: {secret}' api/stats"})}},
        {"kind": "tool_result", "id": "t2", "name": "Bash", "is_error": True,
         "output": {"text": "curl: (6) Could not resolve host: api"}},
        {"kind": "turn", "turn": 2, "input_tokens": 5600, "output_tokens": 120},
        {"kind": "tool", "turn": 3, "id": "t3", "name": "mcp__koda__save_draft",
         "input": {"text": json.dumps({"name": "post.md", "content": "Shipping beats polishing. " * 60}),
                   "folded": 9000}},
        {"kind": "tool_result", "id": "t3", "name": "mcp__koda__save_draft", "is_error": False,
         "output": {"text": f"saved data/drafts/{run_id}/post.md"}},
        {"kind": "artifact", "path": f"data/drafts/{run_id}/post.md", "step": "main"},
        {"kind": "turn", "turn": 3, "input_tokens": 6100, "output_tokens": 880},
        {"kind": "tool", "turn": 4, "id": "t4", "name": "mcp__koda__propose_action",
         "input": {"text": json.dumps({"action": "social.post", "args": {"text": "Shipping beats…"}})}},
        {"kind": "approval", "id": f"{run_id}.social.post.1", "action": "social.post",
         "status": "pending", "step": "main"},
        {"kind": "tool_result", "id": "t4", "name": "mcp__koda__propose_action", "is_error": False,
         "output": {"text": "proposed social.post; a person decides."}},
        {"kind": "turn", "turn": 4, "input_tokens": 6400, "output_tokens": 95},
        {"kind": "text", "turn": 5, "text": "Drafted today's post and asked for approval."},
        {"kind": "turn", "turn": 5, "input_tokens": 6500, "output_tokens": 40},
        {"kind": "session", "outcome": "done", "turns": 5, "cost_usd": 0.0712, "input_tokens": 29720,
         "output_tokens": 1345, "duration_s": 41.2},
        {"kind": "end", "outcome": "done", "turns": 5, "cost_usd": 0.0712},
    ]


async def seed(settings: KodaSettings, bus: Bus, secret: str = "sk-seed-secret-000") -> Seeded:
    home, state = settings.expanded_home(), settings.expanded_state()
    now = datetime.now(UTC)
    (home / "data" / "runs").mkdir(parents=True, exist_ok=True)
    (home / "tasks.json").write_text(json.dumps(TASKS, indent=2) + "\n")
    env = home / ".env"
    if not env.exists():
        env.write_text(f"SEED_API_TOKEN={secret}\nANTHROPIC_API_KEY=sk-ant-seed-key-000\n")
        env.chmod(0o600)
    soul = home / "soul.md"
    if not soul.exists():
        soul.write_text("# Koda\n\nI write and ship small, useful posts. Never post without approval.\n")
    runs = home / "data" / "runs"

    def record(run_id: str, task: str, outcome: str, start: datetime, seconds: float, turns: int,
               cost: float, trigger: str = "cron", error: str | None = None) -> None:
        (runs / f"{run_id}.json").write_text(json.dumps({
            "run_id": run_id, "task": task, "trigger": trigger, "outcome": outcome,
            "started_at": start.isoformat(), "finished_at": (start + timedelta(seconds=seconds)).isoformat(),
            "duration_s": seconds, "turns": turns, "cost_usd": cost, "input_tokens": turns * 5800,
            "output_tokens": turns * 270, "error": error, "result": "ok", "steps": [],
            "artifacts": []}))

    history = [("analytics-pull", 6, 0.012), ("daily-post", 24, 0.07), ("weekly-video", 168, 0.41)]
    for task, every_h, cost in history:
        for n in range(1, 12):
            start = now - timedelta(hours=every_h * n + 1)
            ms = int(start.timestamp() * 1000)
            outcome = "failed" if (n == 3 and task == "analytics-pull") else "done"
            record(f"{task}.{ms}", task, outcome, start, 20 + 7 * n, 3 + n % 4, cost * (1 + n % 3 / 2),
                   error="Bash: analytics API returned 503" if outcome == "failed" else None)
    done_start = now - timedelta(minutes=42)
    done_run = f"daily-post.{int(done_start.timestamp() * 1000)}"
    record(done_run, "daily-post", "done", done_start, 41.2, 5, 0.0712)
    _transcript(state, done_run, _rich_entries(done_run, secret), done_start)
    draft = home / "data" / "drafts" / done_run / "post.md"
    draft.parent.mkdir(parents=True, exist_ok=True)
    draft.write_text("# Shipping beats polishing\n\nThree things I learned this week "
                     f"about shipping small. (key {secret})\n\n1. Cut scope early.\n2. Ship on Friday.\n")
    failed_start = now - timedelta(hours=3)
    failed_run = f"analytics-pull.m{int(failed_start.timestamp() * 1000)}"
    record(failed_run, "analytics-pull", "turn_cap", failed_start, 300, 25, 0.31, "manual",
           "reached the turn cap (25 turns)")
    live_start = now - timedelta(seconds=95)
    live_run = f"weekly-video.m{int(live_start.timestamp() * 1000)}"
    await bus.kv["runs"].put(live_run, RunLedgerEntry(
        run_id=live_run, task="weekly-video", status="running", worker="worker-1").to_bytes())
    await bus.kv["runs"].put(done_run, RunLedgerEntry(
        run_id=done_run, task="daily-post", status="done").to_bytes())
    _transcript(state, live_run, [
        {"kind": "start", "task": "weekly-video", "trigger": "manual", "attempt": 1,
         "requested_by": "console"},
        {"kind": "step", "step": "outline", "index": 0},
        {"kind": "text", "turn": 1, "text": "Outlining the video from this week's learnings."},
        {"kind": "tool", "turn": 1, "id": "v1", "name": "Read",
         "input": {"text": '{"file_path": "learnings.md"}'}},
        {"kind": "tool_result", "id": "v1", "name": "Read", "is_error": False,
         "output": {"text": "- 2026-11-30 Short intros keep viewers"}},
        {"kind": "turn", "turn": 1, "input_tokens": 4800, "output_tokens": 150},
    ], live_start)

    store = ApprovalStore(bus)
    pending = new_proposal("daily-post", done_run, "social.post", args={"text": "Shipping beats polishing"},
                           reason="Today's post, drafted from yesterday's top thread.",
                           artifact=f"data/drafts/{done_run}/post.md", now=now - timedelta(minutes=40))
    await store.propose(pending)
    failed = new_proposal("weekly-video", f"weekly-video.{int((now - timedelta(days=1)).timestamp() * 1000)}",
                          "video.publish", args={"video": "drafts/week-48.mp4"},
                          reason="Week 48 video is cut and captioned.", now=now - timedelta(days=1),
                          timeout_minutes=7 * 24 * 60)
    await store.propose(failed)
    await store.decide(failed.id, True, "console")
    await bus.emit(bus.event("action.done", "video.publish: refused", severity="warning",
                             data=ActionDone(name="video.publish", ok=False, approval_id=failed.id,
                                             idempotency_key=f"approval:{failed.id}",
                                             error="no script in scripts/manifest.json lists "
                                                   "action 'video.publish'")))
    rejected = new_proposal("daily-post", f"daily-post.{int((now - timedelta(days=2)).timestamp() * 1000)}",
                            "social.post", reason="A thread about cron syntax.",
                            now=now - timedelta(days=2), timeout_minutes=7 * 24 * 60)
    await store.propose(rejected)
    await store.decide(rejected.id, False, "111111111111111111")

    spend_day = {f"{now - timedelta(days=n):%Y-%m-%d}": round(0.4 + (n * 37 % 11) / 10, 3)
                 for n in range(0, 30)}
    spend_day[f"{now - timedelta(days=4):%Y-%m-%d}"] = 2.35
    await bus.kv["limits"].put("state", LimitsRecord(
        spend_day=spend_day, spend_month={f"{now:%Y-%m}": round(sum(spend_day.values()) * 0.7, 2)}
    ).to_bytes())
    return Seeded(done_run, live_run, failed_run, pending.id, failed.id)


async def heartbeats(bus: Bus, settings: KodaSettings) -> None:
    """Fresh heartbeats for every service but the gateway (which sends its own)."""
    now = datetime.now(UTC)
    for i, name in enumerate(SERVICES):
        if name == "gateway":
            continue
        beat = Heartbeat(service=name, instance=f"{name}-1", pid=4100 + i,
                         started_at=now - timedelta(hours=26, minutes=7 * i),
                         port=settings.service_port(name))
        await bus.kv["health"].put(f"{name}.{name}-1", beat.to_bytes())
