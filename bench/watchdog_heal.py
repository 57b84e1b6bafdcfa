"""Kill-to-detected and kill-to-healthy for each service, with and without the watchdog.

Run: `python -m bench.watchdog_heal [--kills 20]`. One local stack under supervisord. For each
service, `kill -9` it N times and time, from the kill:
- healthy: the first heartbeat of the new process in the `health` KV (watched, not polled);
- detected: the watchdog's first `heal.step` event about it.
The floor is measured in the same run: the same kills with the watchdog stopped, so only
supervisord restarts the process (its ~1 s poll plus the service's imports). The watchdog
itself is measured against the floor only (it cannot watch its own death).
Targets: kill-to-healthy p99 <= 1.5 s for every service; detection within one heartbeat interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import nats

from koda.shared.messages import Event, Heartbeat
from koda.shared.settings import SERVICES
from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent

HEARTBEAT_INTERVAL = 1.0
TARGET_HEALTHY_P99 = 1.5


class Observer:
    """Watches heartbeats and watchdog events so timings come from pushes, not polls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first_beat: dict[int, float] = {}  # pid -> wall time of its first heartbeat
        self.steps: list[tuple[float, str]] = []  # (wall time, service)

    async def start(self) -> None:
        self.nc = await nats.connect(self.url)
        js = self.nc.jetstream()
        kv = await js.key_value("health")
        self.watcher = await kv.watchall()
        self.task = asyncio.create_task(self._beats())

        async def on_step(msg: nats.aio.msg.Msg) -> None:
            event = Event.from_bytes(msg.data)
            self.steps.append((time.time(), str(event.data.get("incident"))))

        await self.nc.subscribe("koda.events.heal.step", cb=on_step)

    async def _beats(self) -> None:
        async for entry in self.watcher:
            if entry is not None and entry.value:
                beat = Heartbeat.from_bytes(entry.value)
                self.first_beat.setdefault(beat.pid, time.time())


async def kill_once(stack: Stack, obs: Observer, service: str) -> tuple[float, float | None]:
    old = stack.pid(service)
    while old == 0:  # still restarting from the previous kill
        await asyncio.sleep(0.05)
        old = stack.pid(service)
    known = set(obs.first_beat)
    steps_before = len(obs.steps)
    t0 = time.time()
    os.kill(old, signal.SIGKILL)
    deadline = t0 + 30
    healthy = detected = None
    while time.time() < deadline and healthy is None:
        new = [t for pid, t in obs.first_beat.items() if pid not in known and pid != old]
        if new:
            healthy = min(new) - t0
        await asyncio.sleep(0.01)
    for at, who in obs.steps[steps_before:]:
        if who == service:
            detected = at - t0
            break
    if healthy is None:
        raise RuntimeError(f"{service} did not come back within 30 s")
    return healthy, detected


def pctl(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(stack: Stack, kills: int) -> dict[str, dict[str, list[float]]]:
    obs = Observer(stack.client_url)
    await obs.start()
    results: dict[str, dict[str, list[float]]] = {}
    for mode in ("floor", "koda"):
        if mode == "floor":
            stack.supervisorctl("stop", "watchdog")
        else:
            stack.supervisorctl("start", "watchdog")
            await asyncio.sleep(2)
        for service in SERVICES:
            if mode == "floor" and service == "watchdog":
                stack.supervisorctl("start", "watchdog")
                await asyncio.sleep(1.5)
            if mode == "koda" and service == "watchdog":
                continue  # it cannot watch its own death: floor only
            healthy, detected = [], []
            for _ in range(kills):
                h, d = await kill_once(stack, obs, service)
                healthy.append(h)
                if d is not None:
                    detected.append(d)
                await asyncio.sleep(1.2)  # let the incident close (verify delay 0.5 s)
            results.setdefault(service, {})[f"{mode}_healthy"] = healthy
            results[service][f"{mode}_detected"] = detected
            if mode == "floor" and service == "watchdog":
                stack.supervisorctl("stop", "watchdog")
    await obs.nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), extra_env={
            "KODA_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "KODA_WATCHDOG_VERIFY_DELAY": "0.5",
            "KODA_CRASH_LOOP_RESTARTS": "100000",
        })
        stack.up()
        try:
            results = asyncio.run(measure(stack, args.kills))
        finally:
            stack.down()
    print(f"{'service':<10} {'floor med':>9} {'floor max':>9} {'koda med':>9} {'koda p99':>9} "
          f"{'koda max':>9} {'detect med':>10} {'detect max':>10}")
    summary: dict[str, dict[str, float | None]] = {}
    worst_p99 = worst_detect = 0.0
    for service in SERVICES:
        r = results[service]
        floor = r["floor_healthy"]
        koda = r.get("koda_healthy") or []
        det = r.get("koda_detected") or []
        row = {
            "floor_median_s": statistics.median(floor), "floor_max_s": max(floor),
            "koda_median_s": statistics.median(koda) if koda else None,
            "koda_p99_s": pctl(koda, 0.99) if koda else None,
            "koda_max_s": max(koda) if koda else None,
            "detect_median_s": statistics.median(det) if det else None,
            "detect_max_s": max(det) if det else None,
            "detected": f"{len(det)}/{len(koda)}" if koda else "n/a",
        }
        summary[service] = row  # type: ignore[assignment]
        if koda:
            worst_p99 = max(worst_p99, row["koda_p99_s"] or 0)  # type: ignore[arg-type]
        if det:
            worst_detect = max(worst_detect, row["detect_max_s"] or 0)  # type: ignore[arg-type]

        def f(v: object) -> str:
            return "-" if v is None else f"{v:.3f}"

        print(f"{service:<10} {f(row['floor_median_s']):>9} {f(row['floor_max_s']):>9} "
              f"{f(row['koda_median_s']):>9} {f(row['koda_p99_s']):>9} {f(row['koda_max_s']):>9} "
              f"{f(row['detect_median_s']):>10} {f(row['detect_max_s']):>10}")
    out = ROOT / "bench" / "results" / "watchdog_heal.json"
    out.write_text(json.dumps({"kills": args.kills, "heartbeat_interval_s": HEARTBEAT_INTERVAL,
                               "services": summary, "raw": results}, indent=1))
    floor_med = statistics.median(x for s in SERVICES for x in results[s]["floor_healthy"])
    print(f"RESULT watchdog_heal kills={args.kills} worst_healthy_p99_s={worst_p99:.3f} "
          f"floor_median_s={floor_med:.3f} worst_detect_s={worst_detect:.3f} "
          f"heartbeat_interval_s={HEARTBEAT_INTERVAL} "
          f"pass={str(worst_p99 <= TARGET_HEALTHY_P99 and worst_detect <= HEARTBEAT_INTERVAL).lower()}")


if __name__ == "__main__":
    main()
