"""Soak: the whole local stack for N minutes with faults injected at random.

Run: `python bench/soak.py [--minutes 10] [--fault-every 20] [--seed 1]`. One stack under
supervisord on a temp home, the real Claude CLI against the fake Messages API. Two tasks fire
all the time: `beat` (a script, every 5 s) and `think` (an agent run, every 15 s), both with
catch-up `all`. The first fifth of the time runs without faults: that is the same-run baseline.
Then, every `--fault-every` seconds, one fault at random:

- kill -9 of a service (scheduler, worker, actions, scraper, gateway, watchdog);
- a NATS restart (`supervisorctl restart nats`);
- tasks.json broken, fixed again 10 s later;
- a 429 window of 10 s from the model API;
- 10 poison messages on RUNS (bad JSON, bad run id, unknown schema_version, unknown task).

At the end the faults stop, the stack gets a minute to drain, and the report counts:
fires expected (cron instants of `beat` since its first fire) and stored (runs in the ledger),
runs done / lost (fired, never ended) / doubled (more than one end event), model requests
wasted outside 429 windows (requests beyond one per finished agent session), and the worst
time from a fault to every service heartbeating again (for a NATS restart, from the moment the
connection drops). Targets: 0 lost, 0 doubled, healthy within 2 s, 0 wasted. Not injected
(yet): a full disk (tests/faults/test_disk.py covers it).
The last line is `RESULT soak key=value ...`; JSON goes to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from koda.shared import cron  # noqa: E402
from koda.shared.bus import Bus  # noqa: E402
from koda.shared.kvwatch import KeyWatch  # noqa: E402
from koda.shared.messages import Event, Heartbeat  # noqa: E402
from koda.shared.settings import SERVICES, KodaSettings  # noqa: E402
from tests.fake_anthropic import API_KEY, Call, FakeAnthropic, Reply, Status, Text  # noqa: E402
from tests.stack import Stack  # noqa: E402

BEAT_EVERY = 5
TASKS = {"timezone": "UTC", "tasks": [
    {"id": "beat", "script": "beat", "cron": f"*/{BEAT_EVERY} * * * * *", "overlap": "allow",
     "catch_up": {"policy": "all", "max_runs": 100}},
    {"id": "think", "prompt": "Say hello.", "cron": "*/15 * * * * *", "overlap": "allow",
     "catch_up": {"policy": "all", "max_runs": 100}, "retries": {"max": 2, "backoff_seconds": 5}},
]}
MANIFEST = {"scripts": [{"name": "beat", "command": ["python3", "beat.py"]}]}
TARGET_HEALTHY_S = 2.0


class Model:
    """The fake API's behaviour: hello, or 429 inside a window. Counts requests per window."""

    def __init__(self) -> None:
        self.limited_until = 0.0
        self.calls_in_window = 0
        self.calls_outside = 0
        self.lock = threading.Lock()

    def script(self, call: Call) -> Reply:
        with self.lock:
            if time.monotonic() < self.limited_until:
                self.calls_in_window += 1
                return Status(429, retry_after=10)
            self.calls_outside += 1
        return Text("hello")


class Observer:
    """Heartbeats and events, pushed. Heartbeats come through the same KeyWatch the watchdog
    uses (a bare KV watch resumes 11-18 s after a NATS restart and measured itself, not the
    services)."""

    def __init__(self, settings: KodaSettings) -> None:
        self.settings = settings
        # service -> (made at, received at) of each heartbeat; the first one made after a
        # fault's moment is when that service was healthy again.
        self.beats: dict[str, list[tuple[float, float]]] = {}
        self.events: list[Event] = []
        self.dropped_at = 0.0  # when our NATS connection last dropped

    async def start(self) -> None:
        self.bus = await Bus.connect(self.settings, "soak")
        self.nc, self.js = self.bus.nc, self.bus.js
        previous = self.nc._disconnected_cb

        async def on_drop() -> None:
            self.dropped_at = time.time()
            if previous is not None:
                await previous()

        self.nc._disconnected_cb = on_drop
        self.watch = KeyWatch(self.bus, "health", ">", self._beat)
        await self.watch.start()

        async def on_event(msg: Any) -> None:
            self.events.append(Event.from_bytes(msg.data))

        await self.nc.subscribe("koda.events.>", cb=on_event)

    def _beat(self, key: str, value: bytes | None) -> None:
        if value:
            beat = Heartbeat.from_bytes(value)
            self.beats.setdefault(beat.service, []).append((beat.at.timestamp(), time.time()))
            del self.beats[beat.service][:-50]

    def _first_after(self, service: str, since: float) -> float | None:
        return min((got for made, got in self.beats.get(service, []) if made > since), default=None)

    async def healthy_after(self, since: float, timeout: float = 60.0) -> float:
        """Seconds from `since` until every service has sent a heartbeat made after it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            firsts = [self._first_after(s, since) for s in SERVICES]
            if all(f is not None for f in firsts):
                return max(f for f in firsts if f is not None) - since
            await asyncio.sleep(0.05)
        return float("inf")


async def poison(obs: Observer, n: int) -> None:
    good = {"task": "beat", "run_id": "beat.p1", "scheduled_for": datetime.now(UTC).isoformat()}
    bodies = [b"{not json", json.dumps({**good, "run_id": "bad id*>"}).encode(),
              json.dumps({**good, "schema_version": 99}).encode(),
              json.dumps({**good, "task": "nosuch", "run_id": f"nosuch.p{n}"}).encode()]
    for i in range(10):
        subject = "koda.runs.nosuch" if i % 4 == 3 else "koda.runs.beat"
        await obs.js.publish(subject, bodies[i % 4])


async def inject(kind: str, stack: Stack, obs: Observer, model: Model, rng: random.Random,
                 n: int) -> tuple[str, float | None]:
    """Apply one fault; returns (what, seconds until every service heartbeats again or None)."""
    at = time.time()
    if kind == "kill":
        service = rng.choice(SERVICES)
        os.kill(stack.pid(service), signal.SIGKILL)
        return f"kill -9 {service}", await obs.healthy_after(at)
    if kind == "nats":
        # Measured from the fault itself (our connection dropping), not from the start of the
        # supervisorctl process that causes it (about 1 s of Python start-up on a busy host).
        restart = asyncio.create_task(asyncio.to_thread(stack.supervisorctl, "restart", "nats"))
        while obs.dropped_at < at and not restart.done():
            await asyncio.sleep(0.005)
        healthy = await obs.healthy_after(max(obs.dropped_at, at))
        await restart
        return "NATS restart", healthy
    if kind == "config":
        tasks = stack.home / "tasks.json"
        tasks.write_text(json.dumps(TASKS)[:-10])
        asyncio.get_running_loop().call_later(10, tasks.write_text, json.dumps(TASKS, indent=1))
        return "tasks.json broken for 10 s", None
    if kind == "429":
        model.limited_until = time.monotonic() + 10
        return "429 window of 10 s", None
    await poison(obs, n)
    return "10 poison messages", None


async def ledger(obs: Observer) -> dict[str, dict[str, Any]]:
    kv = await obs.js.key_value("runs")
    out: dict[str, dict[str, Any]] = {}
    watcher = await kv.watchall()
    async for entry in watcher:
        if entry is None:
            break
        if entry.value:
            out[entry.key] = json.loads(entry.value)
    await watcher.stop()
    return out


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    model = Model()
    api = FakeAnthropic(model.script).start()
    root = Path(tempfile.mkdtemp(prefix="koda-soak-"))
    stack = Stack(root, {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": API_KEY,
                         "KODA_CLAUDE_MAX_RETRIES": "0", "KODA_RATE_LIMIT_BACKOFF": "10",
                         "KODA_WORKER_CONCURRENCY": "2"})
    stack.up(wait=60)
    faults: list[dict[str, Any]] = []
    try:
        (stack.home / "scripts" / "manifest.json").write_text(json.dumps(MANIFEST))
        (stack.home / "scripts" / "beat.py").write_text("print('beat')\n")
        (stack.home / "tasks.json").write_text(json.dumps(TASKS, indent=1))
        obs = Observer(stack.settings)
        await obs.start()
        started = time.time()
        total = args.minutes * 60
        baseline_until = started + total / 5
        await asyncio.sleep(max(0.0, baseline_until - time.time()))
        baseline_done = sum(1 for e in obs.events if e.event == "run.finished")
        kinds = ["kill", "kill", "nats", "config", "429", "poison"]
        n = 0
        while time.time() < started + total:
            await asyncio.sleep(args.fault_every * rng.uniform(0.5, 1.5))
            if time.time() >= started + total:
                break
            n += 1
            what, healthy = await inject(rng.choice(kinds), stack, obs, model, rng, n)
            faults.append({"at_s": round(time.time() - started, 1), "fault": what,
                           "healthy_s": None if healthy is None else round(healthy, 3)})
            print(f"{faults[-1]['at_s']:>7.1f}s  {what:<28} healthy in "
                  f"{'-' if healthy is None else f'{healthy:.2f}s'}", flush=True)
        ended = time.time()
        (stack.home / "tasks.json").write_text(json.dumps({**TASKS, "tasks": []}))  # no more fires
        await asyncio.sleep(args.drain)
        entries = await ledger(obs)
        return report(obs, entries, faults, model, started, ended, baseline_until, baseline_done)
    finally:
        stack.down()
        api.stop()


def report(obs: Observer, entries: dict[str, dict[str, Any]], faults: list[dict[str, Any]],
           model: Model, started: float, ended: float, baseline_until: float,
           baseline_done: int) -> dict[str, Any]:
    ends = Counter(e.run_id for e in obs.events if e.event in ("run.finished", "run.failed"))
    beat_runs = sorted(k for k in entries if k.startswith("beat.") and k[5:].isdigit())
    first = min((int(k[5:]) for k in beat_runs), default=None)
    expected = 0
    if first is not None:
        spec = cron.parse(str(TASKS["tasks"][0]["cron"]))  # type: ignore[index]
        t = datetime.fromtimestamp(first / 1000, UTC)
        stop = datetime.fromtimestamp(ended, UTC) - timedelta(seconds=BEAT_EVERY)
        while t <= stop:
            expected += 1
            nxt = cron.next_fire(spec, t, ZoneInfo("UTC"))
            if nxt is None:
                break
            t = nxt
    fired = [k for k in entries if k.split(".")[0] in ("beat", "think")]
    done = [k for k in fired if entries[k]["status"] == "done"]
    lost = [k for k in fired if entries[k]["status"] not in ("done", "failed", "turn_cap", "cancelled")]
    doubled = [k for k in fired if ends[k] > 1]
    think_done = sum(1 for k in done if k.startswith("think."))
    wasted = max(0, model.calls_outside - think_done)
    healthy = [f["healthy_s"] for f in faults if f["healthy_s"] is not None]
    worst = max(healthy, default=0.0)
    minutes_base = (baseline_until - started) / 60
    minutes_fault = (ended - baseline_until) / 60
    fault_done = sum(1 for e in obs.events if e.event == "run.finished") - baseline_done
    return {
        "minutes": round((ended - started) / 60, 2), "faults": len(faults),
        "fires_expected": expected, "fires_stored": len(beat_runs),
        "runs_done": len(done), "runs_failed": sum(1 for k in fired if entries[k]["status"] == "failed"),
        "runs_lost": len(lost), "runs_doubled": len(doubled),
        "model_requests_wasted": wasted, "model_requests_in_429": model.calls_in_window,
        "worst_healthy_s": worst, "message_failed": sum(1 for e in obs.events if e.event == "message.failed"),
        "done_per_min_baseline": round(baseline_done / minutes_base, 2) if minutes_base else None,
        "done_per_min_faults": round(fault_done / minutes_fault, 2) if minutes_fault else None,
        "lost_ids": lost[:20], "doubled_ids": doubled[:20], "fault_log": faults,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault-every", type=float, default=20.0)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to finish after the faults")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print()
    print(f"{'metric':<26}{'value':>12}")
    for key in ("minutes", "faults", "fires_expected", "fires_stored", "runs_done", "runs_failed",
                "runs_lost", "runs_doubled", "model_requests_wasted", "model_requests_in_429",
                "worst_healthy_s", "message_failed", "done_per_min_baseline", "done_per_min_faults"):
        print(f"{key:<26}{result[key]!s:>12}")
    out = ROOT / "bench" / "results" / "soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    ok = (result["runs_lost"] == 0 and result["runs_doubled"] == 0
          and result["worst_healthy_s"] <= TARGET_HEALTHY_S and result["model_requests_wasted"] == 0)
    print(f"RESULT soak minutes={result['minutes']} faults={result['faults']} "
          f"fires_expected={result['fires_expected']} fires_stored={result['fires_stored']} "
          f"runs_done={result['runs_done']} runs_lost={result['runs_lost']} "
          f"runs_doubled={result['runs_doubled']} wasted={result['model_requests_wasted']} "
          f"worst_healthy_s={result['worst_healthy_s']} "
          f"baseline_done_per_min={result['done_per_min_baseline']} "
          f"faults_done_per_min={result['done_per_min_faults']} target_met={ok}")


if __name__ == "__main__":
    main()
