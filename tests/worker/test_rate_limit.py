"""A 429 storm: the worker stops at once, pauses every run until the reset, then finishes all."""

from __future__ import annotations

import threading

from koda.shared.bus import Bus
from koda.shared.messages import LimitsRecord
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Status, Text, ToolUse
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks

WINDOW = 4.0


async def test_a_429_storm_over_ten_runs_pauses_all_and_alerts_once(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings, {"id": "storm", "prompt": "Check one thing."})
    lock = threading.Lock()
    seen = {"main": 0, "hit_at": 0.0}

    def script(call: Call) -> Reply:
        with lock:
            seen["main"] += 1
            if seen["main"] == 5:  # mid-way through the second pair of runs
                seen["hit_at"] = call.at
                fake_api.rate_limit(WINDOW, retry_after=WINDOW)
                return Status(429, retry_after=WINDOW)
        # Glob: a real tool call that starts no sandboxed process (ten of those cost seconds).
        return ToolUse.one("Glob", pattern="*.md") if call.turn == 0 else Text("checked")

    fake_api.script = script
    requests = [run_request("storm", i) for i in range(10)]
    in_flight = wsettings.worker_concurrency
    async with running_worker(wsettings):
        for request in requests:
            await publish_run(bus, request)
        await events.wait(lambda: len(events.finished()) == 10, timeout=100)
    hit = seen["hit_at"]
    assert hit, "the limit never hit"
    during = fake_api.calls_between(hit, hit + WINDOW)
    assert 1 <= len(during) <= in_flight, [c.prompt for c in during]
    assert {e.data["outcome"] for e in events.finished()} == {"done"}
    assert {e.run_id for e in events.finished()} == {r.run_id for r in requests}
    alerts = [e for e in events.of("alert") if e.data.get("kind") == "rate_limit"]
    assert len(alerts) == 1, alerts
    state = LimitsRecord.from_bytes((await bus.kv["limits"].get("state")).value)
    assert state.pause_until is not None and (state.pause_reason or "").startswith("rate limited")
