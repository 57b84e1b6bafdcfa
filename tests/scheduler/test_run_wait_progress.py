"""`koda run --wait` says what is happening while it waits: turns and tools from the transcript,
the attempt and why the last one failed, an approval waiting, a rate-limit pause until HH:MM.

The worker's side is played by writing what the worker writes (its ledger entry, transcript
lines, the limits record and its final event), as tests/scheduler/test_task_commands.py does."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.messages import Event, LimitsRecord, RunLedgerEntry
from koda.shared.settings import KodaSettings

from .helpers import run_requests, task, write_tasks

KODA = str(Path(sys.executable).parent / "koda")


async def test_run_wait_shows_turns_attempts_approvals_and_a_rate_limit_pause(
        settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [{**task("report", "0 9 * * *"), "retries": {"max": 2}}])
    env = {**os.environ, "KODA_HOME": str(settings.expanded_home()), "NO_COLOR": "1",
           "KODA_STATE_DIR": str(settings.expanded_state()), "KODA_NATS_URL": settings.nats_url}
    proc = await asyncio.create_subprocess_exec(KODA, "run", "report", "--wait", env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    seen: list[str] = []

    async def line_with(text: str) -> None:
        while not any(text in line for line in seen):
            raw = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
            assert raw, "\n".join(seen)
            seen.append(raw.decode())

    await line_with("queued ")
    run_id = (await run_requests(bus, "report"))[-1].run_id
    transcript = settings.expanded_state() / "transcripts" / f"{run_id}.jsonl"
    transcript.parent.mkdir(parents=True)
    now = datetime.now(UTC)

    def write(*entries: dict[str, object]) -> None:
        with transcript.open("a") as f:
            for e in entries:
                f.write(json.dumps({"at": now.isoformat(), **e}) + "\n")

    async def ledger(**fields: object) -> None:
        entry = RunLedgerEntry(run_id=run_id, task="report", **fields)  # type: ignore[arg-type]
        await bus.kv["runs"].put(run_id, entry.to_bytes())

    await ledger(status="running")
    write({"kind": "start", "trigger": "manual"}, {"kind": "tool", "turn": 1, "name": "Bash"},
          {"kind": "turn", "turn": 1, "input_tokens": 1200, "output_tokens": 80})
    await line_with("turn 1 done (1.2k in, 80 out)")
    await ledger(status="running", attempt=2, error="API error 500")
    await line_with("attempt 2 of 3 (the last one failed: API error 500)")
    write({"kind": "approval", "id": f"{run_id}.social.post.1", "action": "social.post"})
    await line_with("approval waiting: social.post")
    until = now + timedelta(minutes=42)
    await bus.kv["limits"].put("state", LimitsRecord(pause_until=until, pause_reason="429").to_bytes())
    await ledger(status="paused", attempt=2, error="rate limited (429 from the API)")
    await line_with(f"paused by a rate limit until {until.astimezone():%H:%M}")
    await bus.emit(Event(event="run.finished", service="worker", task="report", run_id=run_id,
                         data={"outcome": "done", "turns": 4, "cost_usd": 0.0123, "duration_s": 75.0}))
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert f"{run_id}: done, 4 turns, $0.0123, 1m 15s" in "".join(seen) + out.decode()
