"""Prompt caching: the share of input tokens read from the cache over ten consecutive runs of
one task, through the worker and the real CLI, against the fake API's prefix cache.

Run: `python -m bench.prompt_cache` (about a minute). The fake API counts tokens as Anthropic
bills them (see `prompt_cache` in tests/fake_anthropic.py: identical prefixes up to each
`cache_control` breakpoint are read from the cache). Each run makes two requests (a tool call,
then the answer). The share is cache-read tokens over all input tokens (plain, cache read,
cache write) as the worker's `koda_tokens_total` counts them. Two ways in the same process:
- **stable home**: nothing in the home changes between runs (run ids, times and any data
  attached to a run go into the user message, after the stable system prompt);
- **learnings grow**: one line is added to learnings.md before each run (what the agent's
  `record_learning` does). learnings.md goes into the user message, after the system prompt,
  so only the messages after the system prompt's cache breakpoint change.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bench._worker_common import bench_env, save, wait_for, write_tasks
from koda.services.worker.service import WorkerService
from koda.shared.home import HomeLayout
from koda.shared.messages import RunRequest
from tests.fake_anthropic import Text, ToolUse, sequence

RUNS = 10
PROMPT = "Check the weather file with Bash and say whether to publish today's post."


async def measure(learnings_grow: bool) -> dict[str, float]:
    async with bench_env(worker_concurrency=1) as env:
        env.api.prompt_cache = True
        write_tasks(env.settings, {"id": "weather", "prompt": PROMPT})
        layout = HomeLayout(env.settings.expanded_home())
        service = WorkerService(env.settings)
        serving = asyncio.create_task(service.serve(install_signals=False))
        await wait_for(lambda: getattr(service, "ledger", None) is not None)
        shares: list[float] = []
        before = {"input": 0.0, "cache_read": 0.0, "cache_write": 0.0}
        for i in range(RUNS):
            # Fresh per run: one tool call, then the answer.
            env.api.script = sequence(ToolUse.one("Bash", command="echo sunny"), then=Text("publish"))
            if learnings_grow:
                with layout.learnings.open("a", encoding="utf-8") as f:
                    f.write(f"- run {i}: mornings do better than evenings\n")
            now = datetime.now(UTC)
            request = RunRequest(task="weather", run_id=f"weather.m{int(now.timestamp() * 1000)}{i}",
                                 scheduled_for=now, trigger="manual")
            seen = len(env.events)
            await env.bus.publish("koda.runs.weather", request, msg_id=request.run_id)
            await wait_for(lambda rid=request.run_id, seen=seen: any(  # type: ignore[misc]
                e.event in ("run.finished", "run.failed") and e.run_id == rid
                for e in env.events[seen:]), timeout=120)
            now_tokens = tokens(service)
            run = {k: now_tokens[k] - before[k] for k in before}
            before = now_tokens
            shares.append(run["cache_read"] / max(1.0, sum(run.values())))
        service.stopping.set()
        await serving
        total = tokens(service)
    failed = [e for e in env.events if e.event == "run.failed"]
    assert not failed, failed[0]
    return {"share": round(total["cache_read"] / max(1.0, sum(total.values())), 3),
            "first_run": round(shares[0], 3), "later_runs_min": round(min(shares[1:]), 3),
            "input_tokens": total["input"], "cache_read": total["cache_read"],
            "cache_write": total["cache_write"]}


def tokens(service: WorkerService) -> dict[str, float]:
    out = {"input": 0.0, "cache_read": 0.0, "cache_write": 0.0}
    for metric in service.registry.collect():
        if metric.name == "koda_tokens":
            for sample in metric.samples:
                if sample.name == "koda_tokens_total" and sample.labels["kind"] in out:
                    out[sample.labels["kind"]] += sample.value
    return out


async def main() -> None:
    stable = await measure(learnings_grow=False)
    growing = await measure(learnings_grow=True)
    print(f"{'home':<16} {'cached share':>12} {'first run':>9} {'later min':>9} "
          f"{'input':>8} {'read':>8} {'write':>8}")
    for name, r in (("stable", stable), ("learnings grow", growing)):
        print(f"{name:<16} {r['share']:>12.1%} {r['first_run']:>9.1%} {r['later_runs_min']:>9.1%} "
              f"{r['input_tokens']:>8.0f} {r['cache_read']:>8.0f} {r['cache_write']:>8.0f}")
    save("prompt_cache", {"runs": RUNS, "share_stable": stable["share"],
                          "share_learnings_grow": growing["share"],
                          "later_runs_min_stable": stable["later_runs_min"],
                          "stable": stable, "learnings_grow": growing})


if __name__ == "__main__":
    asyncio.run(main())
