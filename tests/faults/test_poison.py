"""Poison messages: terminated on their first delivery with a `message.failed` naming why, and
never in the way of good runs."""

from __future__ import annotations

import json
import time

from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import FakeAnthropic, Text
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks


def _poison(n: int) -> tuple[str, bytes, str]:
    """(subject, payload, what message.failed must name) for the n-th poison message."""
    good = json.loads(run_request("chores", n).to_bytes())
    kind = n % 5
    if kind == 0:
        return "koda.runs.chores", b"{not json" + str(n).encode(), "json"
    if kind == 1:
        return "koda.runs.chores", json.dumps({**good, "run_id": f"bad id {n}*>"}).encode(), "run_id"
    if kind == 2:
        return "koda.runs.chores", json.dumps({**good, "schema_version": 99}).encode(), "schema_version"
    if kind == 3:
        task = f"nosuch{n}"
        body = {**good, "task": task, "run_id": f"{task}.m{n}"}
        return f"koda.runs.{task}", json.dumps(body).encode(), "no task"
    return "koda.runs.chores", json.dumps({k: v for k, v in good.items() if k != "task"}).encode(), "task"


async def test_fifty_poison_messages_fail_at_once_and_delay_no_good_run(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings, {"id": "chores", "prompt": "Do the chores."})
    fake_api.script = lambda call: Text("chores done")
    async with running_worker(wsettings):
        # Baseline in the same run: five good runs alone.
        started = time.monotonic()
        alone = [run_request("chores", i) for i in range(5)]
        for request in alone:
            await publish_run(bus, request)
        await events.wait(lambda: all(events.finished_for(r.run_id) for r in alone), 120)
        baseline = time.monotonic() - started

        started = time.monotonic()
        good = [run_request("chores", 100 + i) for i in range(5)]
        expected: list[str] = []
        for n in range(50):
            subject, payload, why = _poison(n)
            await bus.js.publish(subject, payload)
            expected.append(why)
            if n % 10 == 9:
                await publish_run(bus, good[n // 10])
        await events.wait(lambda: all(events.finished_for(r.run_id) for r in good)
                          and len(events.of("message.failed")) >= 50, 120)
        mixed = time.monotonic() - started

    for request in good:
        [end] = events.finished_for(request.run_id)
        assert end.data["outcome"] == "done", end
    failed = events.of("message.failed")
    assert len(failed) == 50
    assert all(e.data["deliveries"] == 1 for e in failed), [e.data for e in failed]
    for why in ("json", "run_id", "schema_version", "no task"):
        assert any(why in e.data["error"] for e in failed), why
    info = await bus.js.consumer_info("RUNS", "runs-workers")
    assert info.num_redelivered == 0 and info.num_ack_pending == 0
    # 50 poison messages cost about nothing next to five good runs.
    assert mixed < baseline * 1.5 + 5, (mixed, baseline)
    print(f"\ngood runs alone {baseline:.1f}s; with 50 poison {mixed:.1f}s")
