"""Trigger to worker: a run request published until the worker's handler holds it.

Run: `python -m bench.worker_pickup [N]`. The real `WorkerService` consume loop (shared durable
pull consumer on RUNS, its concurrency slots and decoding) with the handler stopped at its first
line, so only the path from publish to "the worker holds the message" is timed. Baseline in
the same run: the bus alone, a bare nats-py pull consumer on a work-queue stream of the same
server fetching the same way. Requests are published one at a time with a few ms between.
Target: p99 at most 5 ms.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import nats
from nats.js.api import RetentionPolicy, StreamConfig

from bench._worker_common import bench_env, median, pct, save, wait_for
from koda.services.worker.service import WorkerService
from koda.shared.bus import Delivery
from koda.shared.messages import RunRequest


class HoldingWorker(WorkerService):
    """The worker with its handler cut at the first line: it records when it got the message."""

    held: dict[str, float]
    arrived: asyncio.Event

    async def handle(self, delivery: Delivery[RunRequest]) -> None:  # type: ignore[override]
        self.held[delivery.message.run_id] = time.perf_counter()
        self.arrived.set()


async def bus_alone(env: Any, n: int) -> list[float]:
    js = env.bus.js
    await js.add_stream(StreamConfig(name="BENCHQ", subjects=["benchq.>"],
                                     retention=RetentionPolicy.WORK_QUEUE))
    sub = await js.pull_subscribe("benchq.>", durable="bench")
    got: dict[int, float] = {}
    arrived = asyncio.Event()
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(1, timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                got[int(msg.data)] = time.perf_counter()
                arrived.set()
                await msg.ack()

    runner = asyncio.create_task(loop())
    out = []
    for i in range(n):
        await asyncio.sleep(random.uniform(0.002, 0.01))
        arrived.clear()
        started = time.perf_counter()
        await js.publish("benchq.x", str(i).encode())
        while i not in got:
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        out.append(got[i] - started)
    stop.set()
    await runner
    return out


async def main(n: int) -> None:
    async with bench_env(worker_concurrency=2) as env:
        baseline = await bus_alone(env, n)
        service = HoldingWorker(env.settings)
        service.held = {}
        service.arrived = asyncio.Event()
        serving = asyncio.create_task(service.serve(install_signals=False))
        await wait_for(lambda: getattr(service, "ledger", None) is not None)
        await asyncio.sleep(0.5)
        worker = []
        for i in range(n):
            await asyncio.sleep(random.uniform(0.002, 0.01))
            now = datetime.now(UTC)
            request = RunRequest(task="t", run_id=f"t.m{int(now.timestamp() * 1000)}{i}", scheduled_for=now)
            service.arrived.clear()
            started = time.perf_counter()
            await env.bus.publish("koda.runs.t", request, msg_id=request.run_id)
            while request.run_id not in service.held:
                await asyncio.wait_for(service.arrived.wait(), 5)
                service.arrived.clear()
            worker.append(service.held[request.run_id] - started)
        service.stopping.set()
        await serving
    ms = 1000.0
    print(f"{'path':<32} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for label, values in (("bus alone (nats-py pull)", baseline), ("worker holds the message", worker)):
        print(f"{label:<32} {median(values) * ms:>7.2f} {pct(values, 90) * ms:>7.2f} "
              f"{pct(values, 99) * ms:>7.2f} {max(values) * ms:>7.2f}")
    p99 = pct(worker, 99) * ms
    save("worker_pickup", {
        "n": n, "worker_p50_ms": round(median(worker) * ms, 2), "worker_p99_ms": round(p99, 2),
        "bus_p50_ms": round(median(baseline) * ms, 2), "bus_p99_ms": round(pct(baseline, 99) * ms, 2),
        "target_p99_ms": 5, "pass": p99 <= 5})


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
