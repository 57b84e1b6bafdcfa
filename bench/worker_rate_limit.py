"""A rate-limit window over 20 queued runs: requests the API receives with Koda's pause, against
the CLI left to its own retries.

Run: `python -m bench.worker_rate_limit [WINDOW_S]` (default 300; about 2 x WINDOW in all). The
fake API answers every request with a 429 (`retry-after: 1`, as an API under a long usage limit
does) for WINDOW seconds from the first request. In the same run, 20 runs each way, 4 at a time:
- baseline: 20 `query()` calls with the CLI's default retries (10, exponential backoff), four
  at a time, each next one starting when one ends (finished or given up);
- Koda: 20 RunRequests to a worker of concurrency 4 (CLI retries capped at 1, a 429 stops the
  session, every worker pauses until the reset: here `rate_limit_backoff` = WINDOW, as an
  operator sets it to the account's window), then every run completes after the window.
Target: at least 10 times fewer requests during the window with Koda.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from bench._worker_common import bench_env, save, wait_for, write_tasks
from koda.services.worker.service import WorkerService
from koda.shared.messages import RunRequest
from tests.fake_anthropic import FakeAnthropic, say

RUNS, CONCURRENCY = 20, 4


def in_window(api: FakeAnthropic, start: float, window: float) -> int:
    return len(api.calls_between(start, start + window))


async def baseline(api: FakeAnthropic, cwd: str, window: float) -> tuple[int, int]:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

    slots = asyncio.Semaphore(CONCURRENCY)
    ok = 0

    async def one() -> None:
        nonlocal ok
        async with slots:
            options = ClaudeAgentOptions(setting_sources=[], cwd=cwd, env=api.env(), max_turns=5,
                                         system_prompt="You are a helpful assistant.")
            try:
                async for message in query(prompt="Write one line.", options=options):
                    if isinstance(message, ResultMessage) and not message.is_error:
                        ok += 1
            except Exception:
                pass  # gave up after its retries: a failed run

    start = time.monotonic()
    api.rate_limit(window, retry_after=1)
    tasks = [asyncio.create_task(one()) for _ in range(RUNS)]
    await asyncio.sleep(window)
    for task in tasks:
        task.cancel()  # what happens after the window is not counted
    await asyncio.gather(*tasks, return_exceptions=True)
    return in_window(api, start, window), ok


async def koda(window: float) -> tuple[int, int, int, float]:
    async with bench_env(worker_concurrency=CONCURRENCY, rate_limit_backoff=window,
                         rate_limit_jitter=2.0) as env:
        env.api.script = say("one line")
        write_tasks(env.settings, {"id": "line", "prompt": "Write one line."})
        service = WorkerService(env.settings)
        serving = asyncio.create_task(service.serve(install_signals=False))
        await wait_for(lambda: getattr(service, "ledger", None) is not None)
        start = time.monotonic()
        env.api.rate_limit(window, retry_after=1)
        now = datetime.now(UTC)
        for i in range(RUNS):
            request = RunRequest(task="line", run_id=f"line.m{int(now.timestamp() * 1000)}{i:02d}",
                                 scheduled_for=now)
            await env.bus.publish("koda.runs.line", request, msg_id=request.run_id)
        await wait_for(lambda: len([e for e in env.events if e.event == "run.finished"]) >= RUNS,
                       window + 120)
        done_after = time.monotonic() - start
        service.stopping.set()
        await serving
        alerts = len([e for e in env.events if e.event == "alert"])
        return in_window(env.api, start, window), RUNS, alerts, done_after


async def main(window: float) -> None:
    async with bench_env() as env:
        base_requests, base_ok = await baseline(env.api, str(env.settings.expanded_home()), window)
    koda_requests, koda_ok, alerts, done_after = await koda(window)
    ratio = base_requests / max(1, koda_requests)
    print(f"{'path':<36} {'requests in window':>19} {'runs ok':>8}")
    print(f"{'CLI alone, default retries (base)':<36} {base_requests:>19} {base_ok:>8}")
    print(f"{'Koda pause':<36} {koda_requests:>19} {koda_ok:>8}")
    print(f"window {window:.0f}s, {RUNS} runs, {CONCURRENCY} at a time; Koda: {alerts} alert(s), "
          f"all {RUNS} done {done_after:.1f}s after the window opened; {ratio:.1f}x fewer requests")
    save("worker_rate_limit", {
        "window_s": window, "runs": RUNS, "concurrency": CONCURRENCY,
        "baseline_requests": base_requests, "baseline_runs_ok_in_window": base_ok,
        "koda_requests": koda_requests, "koda_runs_done": koda_ok, "koda_alerts": alerts,
        "koda_all_done_s": round(done_after, 1), "ratio": round(ratio, 1), "target_ratio": 10,
        "pass": ratio >= 10})


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 300.0))
