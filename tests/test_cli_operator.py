"""The operator's terminal: the foreground `koda up` (logs streamed, the console's address once
healthy), `koda logs`, `status | head`, pause/resume/enable/disable, approvals from the
terminal, `koda runs` and `koda show` (also with the bus down)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from koda.shared.approvals import ApprovalStore, new_proposal
from koda.shared.bus import Bus
from tests.gateway.console_seed import _rich_entries, _transcript
from tests.stack import KODA, Stack


class Foreground:
    """`koda up` in the foreground, its stdout read line by line."""

    def __init__(self, stack: Stack) -> None:
        self.proc = subprocess.Popen([KODA, "up", "--wait", "150"], env={**stack.env, "NO_COLOR": "1"},
                                     cwd=stack.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "\n".join(self.seen)
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.seen))


@pytest.fixture(scope="module")
def foreground(tmp_path_factory: pytest.TempPathFactory) -> Foreground:  # type: ignore[misc]
    stack = Stack(tmp_path_factory.mktemp("fg"))
    fg = Foreground(stack)
    fg.stack = stack  # type: ignore[attr-defined]
    try:
        fg.wait_for("Koda is up")
        yield fg
    finally:
        if fg.proc.poll() is None:
            os.killpg(fg.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
            try:
                fg.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(fg.proc.pid, signal.SIGKILL)
                raise
        if fg.proc.stdout is not None:
            fg.proc.stdout.close()


def test_foreground_up_streams_service_logs_then_says_where_the_console_is(
        foreground: Foreground) -> None:
    stack: Stack = foreground.stack  # type: ignore[attr-defined]
    console = foreground.wait_for("console  http://")
    assert f":{stack.port_base + 10}" in console
    assert str(stack.state / "console-token") in console
    streamed = "\n".join(foreground.seen)
    assert any(line.startswith(("scheduler |", "worker    |", "gateway   |"))
               for line in foreground.seen), streamed
    assert "CRIT" not in streamed  # supervisord's own chatter stays in its log file


def test_logs_status_and_a_closed_pipe(foreground: Foreground) -> None:
    stack: Stack = foreground.stack  # type: ignore[attr-defined]
    logs = stack.koda("logs", "gateway", "-n", "5")
    assert logs.returncode == 0 and logs.stdout.strip()
    assert all(line.startswith("gateway |") for line in logs.stdout.splitlines() if line[:1] != " ")
    as_json = stack.koda("logs", "scheduler", "-n", "3", "--json")
    assert all(json.loads(line)["service"] == "scheduler" for line in as_json.stdout.splitlines())
    assert stack.koda("logs", "nope").returncode == 2
    piped = subprocess.run(f"{KODA} status | head -1", shell=True, env=stack.env, cwd=stack.root,
                           capture_output=True, text=True, timeout=60)
    assert "Traceback" not in piped.stderr and piped.stdout.startswith("service")
    status = stack.koda("status").stdout
    assert "1015.0s" not in status and "s " in status  # uptimes in words, not raw seconds


def test_pause_resume_enable_disable_and_decide_from_the_terminal(foreground: Foreground) -> None:
    stack: Stack = foreground.stack  # type: ignore[attr-defined]
    tasks_file = stack.home / "tasks.json"
    assert "enabled" in stack.koda("enable", "weekly-analytics").stdout
    task = next(t for t in json.loads(tasks_file.read_text())["tasks"] if t["id"] == "weekly-analytics")
    assert task["enabled"] is True
    assert "paused weekly-analytics" in stack.koda("pause", "weekly-analytics").stdout
    assert "paused: paused from the terminal" in stack.koda("tasks").stdout
    assert "resumed" in stack.koda("resume", "weekly-analytics").stdout
    assert "disabled" in stack.koda("disable", "weekly-analytics").stdout
    assert stack.koda("pause", "no-such-task").returncode == 2

    import asyncio

    async def propose() -> str:
        # Proposed as the worker proposes: with the worker's NATS user.
        as_worker = stack.settings.model_copy(update=stack.credentials("worker"))
        bus = await Bus.connect(as_worker, "test", timeout=10)
        try:
            record = new_proposal("daily-social-post", "daily-social-post.m1", "social.post",
                                  reason="Post the thing")
            await ApprovalStore(bus).propose(record)
            return record.id
        finally:
            await bus.close()

    approval = asyncio.run(propose())
    listed = json.loads(stack.koda("approvals", "--json").stdout)
    assert [a["id"] for a in listed] == [approval]
    rejected = stack.koda("reject", approval, "--note", "not this week")
    assert rejected.returncode == 0 and "rejected" in rejected.stdout
    decided = json.loads(stack.koda("approvals", "--all", "--json").stdout)[0]
    assert decided["decided_by"] == "terminal" and decided["note"] == "not this week"
    assert stack.koda("approve", approval).returncode == 1  # already decided: nothing changes


def test_runs_and_show_read_the_disk_when_the_bus_is_down(tmp_path: Path) -> None:
    stack = Stack(tmp_path)  # never started: no bus
    run_id = "daily-post.1796185666413"
    (stack.home / "data" / "runs").mkdir(parents=True)
    (stack.home / "data" / "runs" / f"{run_id}.json").write_text(json.dumps({
        "run_id": run_id, "task": "daily-post", "trigger": "cron", "outcome": "done",
        "started_at": "2026-12-01T08:30:00+00:00", "duration_s": 41.2, "turns": 5,
        "cost_usd": 0.0712, "input_tokens": 29720, "output_tokens": 1345}))
    from datetime import UTC, datetime

    _transcript(stack.state, run_id, _rich_entries(run_id, "s3cret"), datetime.now(UTC))
    runs = stack.koda("runs", "--json", timeout=30)
    [row] = json.loads(runs.stdout)
    assert row["run_id"] == run_id and row["tokens"] == 29720 + 1345 and row["outcome"] == "done"
    table = stack.koda("runs", timeout=30).stdout
    assert "41s" in table and "$0.0712" in table and "not reachable" in table
    show = stack.koda("show", run_id, timeout=30)
    assert show.returncode == 0, show.stderr
    out = show.stdout
    for expected in ("done", "step main", "→ Read", "← error curl", "approval requested: social.post",
                     "turn 3: 6.1k in, 880 out, $0.016", "ended done", "kept"):
        assert expected in out, (expected, out)
    assert stack.koda("show", "nope.1", timeout=30).returncode == 1


def test_the_console_of_a_local_stack_shows_every_process_with_pid_and_uptime(
        foreground: Foreground) -> None:
    import httpx

    stack: Stack = foreground.stack  # type: ignore[attr-defined]
    token = (stack.state / "console-token").read_text().strip()
    page = httpx.get(f"http://127.0.0.1:{stack.port_base + 10}/",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    nats_row = page.split("<b>nats</b>", 1)[1].split("</tr>", 1)[0]
    pid = stack.pid("nats")
    assert f">{pid}<" in nats_row and ">ok<" in nats_row
    assert "server 2." in nats_row and "streams" in nats_row  # its version and JetStream use


def test_show_follow_prints_new_entries_until_the_run_ends(tmp_path: Path) -> None:
    stack = Stack(tmp_path)  # the bus is down: the transcript on disk is enough to follow
    run_id = "weekly-video.m1796188640451"
    from datetime import UTC, datetime

    _transcript(stack.state, run_id, [{"kind": "start", "trigger": "manual", "attempt": 1}],
                datetime.now(UTC))
    proc = subprocess.Popen([KODA, "show", run_id, "-f"], env={**stack.env, "NO_COLOR": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "started (manual, attempt 1)" in proc.stdout.readline() + proc.stdout.readline()
    path = stack.state / "transcripts" / f"{run_id}.jsonl"
    with path.open("a") as f:
        f.write(json.dumps({"at": datetime.now(UTC).isoformat(), "kind": "text", "turn": 1,
                            "text": "halfway there"}) + "\n")
        f.flush()
        f.write(json.dumps({"at": datetime.now(UTC).isoformat(), "kind": "end",
                            "outcome": "done"}) + "\n")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "agent: halfway there" in out and "ended done" in out
