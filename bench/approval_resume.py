"""From an approver's click to the agent going on: resuming the paused session vs a fresh one.

Run: `python -m bench.approval_resume [n]` (default 6; about 30 s per round on a loaded
2-core host). A real NATS server, the worker in this process with the real bundled CLI against
the scripted fake API, and a real stdio MCP server standing in for YouTube (it appends each call
it runs to a file).

Each round: a run calls the gated `mcp__youtube__upload`, the session pauses
(`run.awaiting_approval`); then the decision is taken (`ApprovalStore.decide`, what a Discord
click or the console calls) and we time
- click -> the resumed call runs (the MCP server has written it), and
- click -> the agent's next model request, carrying the tool's result.
Baseline, same run: click -> the first model request of a fresh session started with the
decision in its prompt (what Koda did before: a new run that is told the outcome, and would
still have to make the call itself).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from bench._worker_common import Env, bench_env, median, pct, save, wait_for, write_tasks
from koda.services.worker.service import WorkerService
from koda.shared import approval_keys
from koda.shared.approvals import ApprovalStore
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from tests.fake_anthropic import Call, Reply, Text, ToolUse
from tests.inprocess import serving

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "worker" / "youtube_mcp.py"


def script(call: Call) -> Reply:
    if "FRESH" in call.prompt or call.turn > 0:
        return Text("recorded")
    return ToolUse.one("mcp__youtube__upload", title="hello")


def request(task: str, i: int, prompt: str | None = None) -> RunRequest:
    now = datetime.now(UTC)
    return RunRequest(task=task, run_id=f"{task}.m{int(now.timestamp() * 1000)}{i}",
                      scheduled_for=now, trigger="manual", prompt=prompt)


def calls_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def resumed_round(env: Env, calls: Path, i: int) -> tuple[float, float]:
    run = request("publish", i)
    await env.bus.publish("koda.runs.publish", run, msg_id=run.run_id)
    await wait_for(lambda: any(e.event == "run.awaiting_approval" and e.run_id == run.run_id
                               for e in env.events), 120)
    [paused] = [e for e in env.events if e.event == "run.awaiting_approval" and e.run_id == run.run_id]
    before_calls, before_requests = calls_in(calls), len(env.api.main_calls())
    clicked = time.perf_counter()
    await ApprovalStore(env.bus).decide(paused.data["approval_id"], True, "bench")
    await wait_for(lambda: calls_in(calls) > before_calls, 120)
    ran = time.perf_counter() - clicked
    await wait_for(lambda: any("videos.test" in c.last_tool_result()
                               for c in env.api.main_calls()[before_requests:]), 120)
    told = time.perf_counter() - clicked
    await wait_for(lambda: any(e.event in ("run.finished", "run.failed") and e.run_id == run.run_id
                               for e in env.events), 120)
    return ran, told


async def fresh_round(env: Env, i: int) -> float:
    before = len(env.api.main_calls())
    clicked = time.perf_counter()
    run = request("fresh", i, prompt="FRESH: the upload of 'hello' was approved by bench. "
                  "Upload it now and record the URL.")
    await env.bus.publish("koda.runs.fresh", run, msg_id=run.run_id)
    await wait_for(lambda: any("FRESH" in c.prompt for c in env.api.main_calls()[before:]), 120)
    first = time.perf_counter() - clicked
    await wait_for(lambda: any(e.event in ("run.finished", "run.failed") and e.run_id == run.run_id
                               for e in env.events), 120)
    return first


async def main(n: int) -> None:
    signing, verify = approval_keys.generate()
    async with bench_env(approval_signing_key=SecretStr(signing), approval_verify_key=verify,
                         worker_ack_wait=30.0) as env:
        env.api.script = script
        calls = env.root / "youtube-calls.jsonl"
        layout = HomeLayout(env.settings.expanded_home())
        layout.mcp_servers.write_text(json.dumps({"mcpServers": {"youtube": {
            "command": sys.executable, "args": [str(SERVER), str(calls)]}}}))
        write_tasks(env.settings,
                    {"id": "publish", "prompt": "Publish the video.", "gated": ["mcp__youtube__*"]},
                    {"id": "fresh", "prompt": "unused", "gated": ["mcp__youtube__*"]})
        ran: list[float] = []
        told: list[float] = []
        fresh: list[float] = []
        async with serving(WorkerService(env.settings)):
            await fresh_round(env, 0)  # warm-up: the first CLI start pays the imports
            for i in range(n):
                a, b = await resumed_round(env, calls, i)
                ran.append(a)
                told.append(b)
                fresh.append(await fresh_round(env, i + 1))
        once = calls_in(calls) == n
    print(f"{'click to ...':<46} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for label, values in (("resumed call runs (paused session)", ran),
                          ("agent's next request has the result", told),
                          ("baseline: fresh session's first request", fresh)):
        print(f"{label:<46} {median(values):>7.2f} {pct(values, 99):>7.2f} {max(values):>7.2f}")
    save("approval_resume", {
        "n": n, "resumed_call_p50_s": round(median(ran), 2), "resumed_call_p99_s": round(pct(ran, 99), 2),
        "next_request_p50_s": round(median(told), 2), "next_request_p99_s": round(pct(told, 99), 2),
        "fresh_first_request_p50_s": round(median(fresh), 2),
        "fresh_first_request_p99_s": round(pct(fresh, 99), 2),
        "each_call_ran_once": once})


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6))
