"""Per-run overhead of the worker: run request dequeued to result recorded, against `query()`.

Run: `python -m bench.worker_overhead [N]`. In the same run, against the same fake Anthropic API
and the same one-turn script, interleaved so all see the same machine:
- `query()` bare: the SDK and the CLI with minimal options;
- `query()` with the session options the worker builds (the same prompt, guard hook, koda MCP
  server and, by default, the CLI's bubblewrap sandbox): the baseline of the target, since the
  sandbox is a cost of the CLI session, not of the worker;
- the worker: publish a RunRequest; it claims it, builds prompt and options, runs the session,
  writes the record, daily log, ledger and events. Timed from publish to the `run.finished`
  event arriving, so it includes the bus both ways.
Target: the worker's median at most 10% over `query()` with the same options.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench._worker_common import bench_env, median, pct, save, wait_for, write_tasks
from koda.services.worker.options import SessionSpec, build_options
from koda.services.worker.prompt import system_prompt
from koda.services.worker.service import WorkerService
from koda.services.worker.tools import KodaTools
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from koda.shared.tasks import Task
from tests.fake_anthropic import say

PROMPT = "Write one line about the weather."


async def direct_query(options: Any) -> float:
    from claude_agent_sdk import ResultMessage, query

    started = time.perf_counter()
    async for message in query(prompt=PROMPT, options=options):
        if isinstance(message, ResultMessage):
            assert message.subtype == "success", message
    return time.perf_counter() - started


async def main(n: int) -> None:
    async with bench_env(worker_concurrency=1) as env:
        env.api.script = say("sunny")
        write_tasks(env.settings, {"id": "weather", "prompt": PROMPT})
        service = WorkerService(env.settings)
        serving = asyncio.create_task(service.serve(install_signals=False))
        await wait_for(lambda: getattr(service, "ledger", None) is not None)
        from claude_agent_sdk import ClaudeAgentOptions

        layout = HomeLayout(env.settings.expanded_home())
        bare_options = ClaudeAgentOptions(setting_sources=[], cwd=str(layout.root), env=env.api.env(),
                                          max_turns=5, system_prompt="You are a helpful assistant.")
        task = Task(id="weather", prompt=PROMPT)
        tools = KodaTools(env.bus, layout, task, "bench.direct", service.redact, 60)
        spec = SessionSpec(system_prompt(layout, None), task.max_turns, None, [])
        same_options = build_options(env.settings, layout, spec, tools.server())
        bare: list[float] = []
        direct: list[float] = []
        worker: list[float] = []
        # One warm-up of each (imports, first CLI start, the SDK's lazy import in the worker).
        for i in range(n + 1):
            b = await direct_query(bare_options)
            d = await direct_query(same_options)
            now = datetime.now(UTC)
            request = RunRequest(task="weather", run_id=f"weather.m{int(now.timestamp() * 1000)}{i}",
                                 scheduled_for=now, trigger="manual")
            seen = len(env.events)
            started = time.perf_counter()
            await env.bus.publish("koda.runs.weather", request, msg_id=request.run_id)
            await wait_for(lambda rid=request.run_id, seen=seen: any(  # type: ignore[misc]
                e.event in ("run.finished", "run.failed") and e.run_id == rid for e in env.events[seen:]))
            w = time.perf_counter() - started
            if i:
                bare.append(b)
                direct.append(d)
                worker.append(w)
        service.stopping.set()
        await serving
    failed = [e for e in env.events if e.event == "run.failed"]
    assert not failed, failed[0]
    b_med, d_med, w_med = median(bare), median(direct), median(worker)
    overhead = (w_med - d_med) / d_med * 100
    over_bare = (w_med - b_med) / b_med * 100
    print(f"{'path':<34} {'median s':>9} {'p90 s':>7} {'min s':>7}")
    for label, values in (("query() bare", bare), ("query() same options (baseline)", direct),
                          ("worker: publish -> recorded", worker)):
        print(f"{label:<34} {median(values):>9.3f} {pct(values, 90):>7.3f} {min(values):>7.3f}")
    print(f"worker over query() with the same options: {overhead:+.1f}% "
          f"({(w_med - d_med) * 1000:+.0f} ms); over bare query(): {over_bare:+.1f}%; "
          f"sandbox={env.settings.claude_sandbox}; n={n}")
    save("worker_overhead", {
        "n": n, "bare_median_s": round(b_med, 4), "direct_median_s": round(d_med, 4),
        "worker_median_s": round(w_med, 4), "overhead_pct": round(overhead, 1),
        "overhead_ms": round((w_med - d_med) * 1000, 1), "over_bare_pct": round(over_bare, 1),
        "sandbox": env.settings.claude_sandbox, "target_pct": 10, "pass": overhead <= 10,
        "bare_s": [round(x, 4) for x in bare], "direct_s": [round(x, 4) for x in direct],
        "worker_s": [round(x, 4) for x in worker]})


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
