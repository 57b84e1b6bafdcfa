"""kill -9 of a worker mid-run takes its Claude CLI with it: no model request comes from an
attempt after its kill, and the run's spend is counted once per attempt."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import LimitsRecord, RunLedgerEntry
from koda.shared.run_record import RunRecord
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Text, ToolUse
from tests.worker.conftest import Events, WorkerProcess, publish_run, run_request, write_tasks

KILLS = 10


def children(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def describe(pids: list[int]) -> list[bytes]:
    return [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in pids]


@pytest.mark.timeout(600)
async def test_ten_kills_mid_run_leave_no_session_behind(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path) -> None:
    write_tasks(wsettings, {"id": "chores", "prompt": "Do the chores."})
    hold = threading.Event()
    held = threading.Event()
    releases: list[threading.Event] = []
    kill_times: list[float] = []

    def script(call: Call) -> Reply:
        if hold.is_set():
            hold.clear()
            release = threading.Event()
            releases.append(release)
            held.set()
            release.wait(30)  # the worker is killed meanwhile; an orphan would carry on here
            return ToolUse.one("Glob", pattern="orphan-step*")  # its result names the file
        # Glob: a real tool call that starts no sandboxed process (twenty of those cost seconds).
        return ToolUse.one("Glob", pattern="soul.md") if call.turn == 0 else Text("chores done")

    fake_api.script = script
    (HomeLayout(wsettings.expanded_home()).root / "orphan-step.md").write_text("marker\n")
    worker = WorkerProcess(wsettings, tmp_path / "worker.log")
    worker.start()
    runs = []
    try:
        for i in range(KILLS):
            request = run_request("chores", i)
            runs.append(request)
            held.clear()
            hold.set()
            await publish_run(bus, request)
            assert await asyncio.to_thread(held.wait, 60), f"run {i} never reached the model"
            assert worker.proc is not None
            sessions = children(worker.proc.pid)
            assert sessions, "no CLI under the worker"
            os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, as the OOM killer does
            worker.proc.wait(10)
            kill_times.append(time.monotonic())
            deadline = time.monotonic() + 5
            while any(alive(p) for p in sessions) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            survivors = [p for p in sessions if alive(p)]
            assert not survivors, f"kill {i}: outlived the worker: {describe(survivors)}"
            releases[-1].set()  # an orphan would now get its answer and go on
            restarted = time.monotonic()
            # Nothing may have reached the model between the kill and the next worker.
            late = [c for c in fake_api.main_calls() if kill_times[-1] < c.at < restarted]
            assert not late, f"kill {i}: {len(late)} model requests from the killed attempt"
            worker.start()
            await events.wait(lambda r=request.run_id: bool(events.finished_for(r)), 90)
            print(f"kill {i}: run done {time.monotonic() - restarted:.1f}s after the restart")
    finally:
        for release in releases:
            release.set()
        worker.stop()

    layout = HomeLayout(wsettings.expanded_home())
    per_session = 0.0
    for request in runs:
        [end] = events.finished_for(request.run_id)
        assert end.data["outcome"] == "done", end
        entry = RunLedgerEntry.from_bytes((await bus.kv["runs"].get(request.run_id)).value)
        # Found cut short at least once (more if a slow restart missed an ack deadline).
        assert entry.status == "done" and entry.claims >= 1 and entry.fence == entry.claims + 1
        record = RunRecord.model_validate_json((layout.runs / f"{request.run_id}.json").read_text())
        per_session = record.cost_usd
    # Every session that got its final answer paid once (and was counted once); a killed one
    # never got an answer, so it cost nothing.
    finished_sessions = sum(1 for c in fake_api.main_calls() if c.turn == 1)
    limits = LimitsRecord.from_bytes((await bus.kv["limits"].get("state")).value)
    assert per_session > 0
    assert sum(limits.spend_day.values()) == pytest.approx(per_session * finished_sessions)
    assert not any("orphan-step" in c.last_tool_result() for c in fake_api.main_calls())
