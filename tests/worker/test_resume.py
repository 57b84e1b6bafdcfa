"""Crashes: a killed worker's run is redelivered, resumes at its step, and is recorded once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import RunLedgerEntry
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Text, ToolUse
from tests.waits import queue_drained
from tests.worker.conftest import Events, WorkerProcess, publish_run, run_request, write_tasks

STEPS = [
    {"id": "research", "prompt": "STEP-ONE: research the topic.", "artifact": "outline.md"},
    {"id": "draft", "prompt": "STEP-TWO: write the draft.", "artifact": "draft.md"},
    {"id": "edit", "prompt": "STEP-THREE: edit the draft.", "artifact": "final.md"},
]


async def test_a_pipeline_killed_in_step_three_resumes_at_step_three(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path) -> None:
    write_tasks(wsettings, {"id": "blog", "steps": STEPS})
    in_step_three, release = threading.Event(), threading.Event()

    def script(call: Call) -> Reply:
        if "STEP-ONE" in call.prompt:
            return Text("the outline")
        if "STEP-TWO" in call.prompt:
            return Text("the draft")
        if not in_step_three.is_set():
            in_step_three.set()
            release.wait(30)  # hold the first step-3 request: the worker dies meanwhile
        return Text("the final post")

    fake_api.script = script
    layout = HomeLayout(wsettings.expanded_home())
    request = run_request("blog")
    drafts = layout.drafts / request.run_id
    worker = WorkerProcess(wsettings, tmp_path / "worker.log")
    worker.start()
    try:
        await publish_run(bus, request)
        assert await asyncio.to_thread(in_step_three.wait, 60), "step 3 never started"
        before = {name: (drafts / name).stat().st_mtime_ns for name in ("outline.md", "draft.md")}
        worker.kill()
        killed_at = time.monotonic()
        release.set()
        worker.start()
        await events.wait(lambda: events.finished(), timeout=60)
    finally:
        worker.stop()
    [event] = events.finished()
    assert event.data["outcome"] == "done", event
    after_restart = [c for c in fake_api.main_calls() if c.at > killed_at]
    assert after_restart and all("STEP-THREE" in c.prompt for c in after_restart)
    assert not any("STEP-ONE" in c.prompt or "STEP-TWO" in c.prompt for c in after_restart)
    # Step 3 was given the earlier steps' artifacts, untouched since before the crash.
    assert "the draft" in after_restart[0].prompt
    assert (drafts / "outline.md").read_text() == "the outline"
    assert (drafts / "draft.md").read_text() == "the draft"
    assert {n: (drafts / n).stat().st_mtime_ns for n in before} == before
    assert (drafts / "final.md").read_text() == "the final post"
    entry = RunLedgerEntry.from_bytes((await bus.kv["runs"].get(request.run_id)).value)
    assert entry.status == "done" and entry.steps_done == ["research", "draft", "edit"]
    assert entry.claims == 1  # found cut short once


async def test_a_run_killed_mid_way_completes_exactly_once(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path) -> None:
    write_tasks(wsettings, {"id": "chores", "prompt": "Do three chores."})
    mid_way, release = threading.Event(), threading.Event()

    def script(call: Call) -> Reply:
        if call.turn == 2 and not mid_way.is_set():
            mid_way.set()
            release.wait(30)
        if call.turn < 3:
            return ToolUse.one("Glob", pattern=f"chore-{call.turn}*")  # no sandboxed process
        return Text("chores done")

    fake_api.script = script
    layout = HomeLayout(wsettings.expanded_home())
    request = run_request("chores")
    worker = WorkerProcess(wsettings, tmp_path / "worker.log")
    worker.start()
    try:
        await publish_run(bus, request)
        assert await asyncio.to_thread(mid_way.wait, 60)
        worker.kill()
        release.set()
        worker.start()
        await events.wait(lambda: events.finished(), timeout=60)
        # The same request delivered again (a replay, a second publisher): nothing runs twice.
        calls = len(fake_api.main_calls())
        await bus.publish(f"koda.runs.{request.task}", request, msg_id=f"{request.run_id}-again")
        await queue_drained(bus, "RUNS", timeout=30)  # the replay was taken and answered
    finally:
        worker.stop()
    assert len(fake_api.main_calls()) == calls
    [event] = events.finished()
    assert event.data["outcome"] == "done" and event.data["result"] == "chores done"
    records = list(layout.runs.glob("*.json"))
    assert [r.name for r in records] == [f"{request.run_id}.json"]
    assert json.loads(records[0].read_text())["outcome"] == "done"
    lines = [ln for p in layout.daily_logs.glob("*.md") for ln in p.read_text().splitlines()
             if request.run_id in ln]
    assert len(lines) == 1
