"""Faults on a whole live stack (supervisord, NATS, every service, the real `koda` command):
a missing secret fails at once, a retry says when and why, and a broken tasks.json survives
restarts of the services that read it without pausing anything."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

from koda.shared.bus import Bus
from koda.shared.messages import Event, RunLedgerEntry
from tests.stack import Stack

TASKS = {"timezone": "UTC", "tasks": [
    {"id": "post", "script": "needs_key", "retries": {"max": 2, "backoff_seconds": 120}},
    {"id": "flaky", "script": "flaky", "retries": {"max": 2, "backoff_seconds": 1}},
    {"id": "tick", "script": "ok", "cron": "*/2 * * * * *", "pause_after_failures": 2},
]}
MANIFEST = {"scripts": [
    {"name": "needs_key", "command": ["python3", "ok.py"], "secrets": ["SOCIAL_API_KEY"]},
    {"name": "flaky", "command": ["python3", "flaky.py"]},
    {"name": "ok", "command": ["python3", "ok.py"]},
]}


@pytest.fixture(scope="module")
def faulty(stack: Stack) -> Stack:
    (stack.home / "scripts" / "manifest.json").write_text(json.dumps(MANIFEST))
    (stack.home / "scripts" / "ok.py").write_text("print('ok')\n")
    (stack.home / "scripts" / "flaky.py").write_text(
        "import sys\nprint('upstream said 503', file=sys.stderr)\nsys.exit(1)\n")
    (stack.home / "tasks.json").write_text(json.dumps(TASKS, indent=1))
    return stack


class Feed:
    def __init__(self) -> None:
        self.items: list[Event] = []

    async def on_msg(self, msg: object) -> None:
        self.items.append(Event.from_bytes(msg.data))  # type: ignore[attr-defined]

    def of(self, kind: str, task: str | None = None, since: float = 0.0) -> list[Event]:
        return [e for e in self.items if e.event == kind and (task is None or e.task == task)
                and e.at.timestamp() >= since]

    async def wait(self, predicate: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, "condition not met"
            await asyncio.sleep(0.1)


@pytest.fixture
async def bus_and_feed(faulty: Stack) -> AsyncIterator[tuple[Bus, Feed]]:
    bus = await Bus.connect(faulty.settings, "test", ensure=False)
    feed = Feed()
    sub = await bus.nc.subscribe("koda.events.>", cb=feed.on_msg)
    try:
        yield bus, feed
    finally:
        await sub.unsubscribe()
        await bus.close()


async def koda_run(stack: Stack, task: str) -> tuple[int, str, float]:
    started = time.monotonic()
    done = await asyncio.to_thread(stack.koda, "run", task, "--wait", "--timeout", "90", timeout=120)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


@pytest.mark.timeout(300)
async def test_a_missing_secret_fails_at_once_with_the_reason(
        faulty: Stack, bus_and_feed: tuple[Bus, Feed]) -> None:
    code, out, took = await koda_run(faulty, "post")
    assert code == 1, out
    assert "SOCIAL_API_KEY" in out and "cause: missing_secret" in out, out
    assert "attempt 1/3 failed" not in out and took < 60, (took, out)


@pytest.mark.timeout(300)
async def test_a_retry_says_which_attempt_failed_why_and_when_the_next_comes(
        faulty: Stack, bus_and_feed: tuple[Bus, Feed]) -> None:
    bus, feed = bus_and_feed
    code, out, _ = await koda_run(faulty, "flaky")
    assert code == 1, out
    assert "attempt 1/3 failed: " in out and "upstream said 503" in out and "next in 1 s" in out, out
    assert "attempt 2/3 failed: " in out and "next in 2 s" in out, out
    assert "attempt 3/3" in out, out
    [retry, *_] = feed.of("run.retrying", "flaky")
    assert retry.data["attempt"] == 1 and retry.data["attempts"] == 3 and retry.data["next_in_s"] == 1
    assert retry.run_id is not None
    entry = RunLedgerEntry.from_bytes((await (await bus.js.key_value("runs")).get(retry.run_id)).value)
    assert entry.status == "failed" and entry.attempt == 3 and entry.attempts == 3


@pytest.mark.timeout(300)
async def test_a_broken_tasks_json_survives_restarts_and_pauses_nothing(
        faulty: Stack, bus_and_feed: tuple[Bus, Feed]) -> None:
    bus, feed = bus_and_feed
    await feed.wait(lambda: feed.of("run.finished", "tick"), 60)
    tasks = faulty.home / "tasks.json"
    tasks.write_text(tasks.read_text()[:-20])  # cut short: invalid JSON
    for service in ("scheduler", "worker"):
        os.kill(faulty.pid(service), signal.SIGKILL)
    broken_at = time.time()
    # Both come back on the last good copy: tick keeps firing and running, nothing fails.
    await feed.wait(lambda: len(feed.of("run.finished", "tick", since=broken_at)) >= 3, 90)
    assert not feed.of("run.failed", "tick", since=broken_at)
    assert not feed.of("task.paused", "tick")
    assert feed.of("config.invalid", since=broken_at), "the broken file was not reported"
    try:
        await (await bus.js.key_value("scheduler")).get("pause.tick")
        paused = True
    except Exception:
        paused = False
    assert not paused
    tasks.write_text(json.dumps(TASKS, indent=1))
