"""A failed run is tried again after the task's backoff, resuming rather than starting over."""

from __future__ import annotations

import json

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import RunLedgerEntry
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Status, Text
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks


async def test_a_failed_run_is_retried_with_the_tasks_backoff(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings,
                {"id": "flaky", "prompt": "Try it.", "retries": {"max": 1, "backoff_seconds": 0.5}},
                {"id": "fragile", "prompt": "Try it once."})
    failures = {"flaky": 0, "fragile": 0}

    def script(call: Call) -> Reply:
        key = "fragile" if "once" in call.prompt else "flaky"
        if failures[key] < 2:  # the request and the CLI's one retry of it
            failures[key] += 1
            return Status(500, message="internal error")
        return Text("worked")

    fake_api.script = script
    flaky, fragile = run_request("flaky"), run_request("fragile", 1)
    async with running_worker(wsettings):
        await publish_run(bus, flaky)
        await publish_run(bus, fragile)
        await events.wait(lambda: len(events.finished()) == 2, timeout=60)
    [retried] = events.finished_for(flaky.run_id)
    assert retried.data["outcome"] == "done" and retried.data["result"] == "worked"
    [failed] = events.finished_for(fragile.run_id)
    assert failed.event == "run.failed" and failed.data["outcome"] == "failed"
    assert "500" in failed.data["error"] or "internal" in failed.data["error"], failed.data
    entry = RunLedgerEntry.from_bytes((await bus.kv["runs"].get(flaky.run_id)).value)
    assert entry.attempt == 2 and entry.status == "done"
    record = json.loads((HomeLayout(wsettings.expanded_home()).runs / f"{flaky.run_id}.json").read_text())
    assert record["deliveries"] == 2
