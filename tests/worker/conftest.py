"""Fixtures for worker tests: the scripted fake API, a home with tasks, a worker in-process or
as a real process, and helpers to publish runs and wait for their events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from koda.services.worker.service import WorkerService
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout, init_home
from koda.shared.messages import Event, RunRequest
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import API_KEY, FakeAnthropic
from tests.inprocess import serving


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as api:
        yield api


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker's own HOME (where the CLI keeps ~/.claude): a fresh one per test."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def wsettings(settings: KodaSettings, fake_api: FakeAnthropic, user_home: Path) -> KodaSettings:
    """Settings for a worker talking to the fake API, on an initialised home."""
    s = settings.model_copy(update={
        "anthropic_base_url": fake_api.url,
        "anthropic_api_key": SecretStr(API_KEY),
        "rate_limit_backoff": 3.0,
        "rate_limit_jitter": 0.5,
        "worker_ack_wait": 3.0,
        "worker_concurrency": 2,
    })
    init_home(s)
    return s


def write_tasks(settings: KodaSettings, *tasks: dict[str, Any]) -> None:
    layout = HomeLayout(settings.expanded_home())
    layout.tasks.write_text(json.dumps({"timezone": "UTC", "tasks": list(tasks)}, indent=1))


def run_request(task: str, n: int = 0, **extra: Any) -> RunRequest:
    now = datetime.now(UTC)
    return RunRequest(task=task, run_id=f"{task}.m{int(now.timestamp() * 1000) + n}",
                      scheduled_for=now, trigger="manual", **extra)


async def publish_run(bus: Bus, request: RunRequest) -> None:
    await bus.publish(f"koda.runs.{request.task}", request, msg_id=request.run_id)


class Events:
    """Collects every event on the bus from the moment it is created."""

    def __init__(self) -> None:
        self.items: list[Event] = []
        self._changed = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        self.items.append(Event.from_bytes(msg.data))
        self._changed.set()

    def of(self, kind: str, run_id: str | None = None) -> list[Event]:
        return [e for e in self.items if e.event == kind and (run_id is None or e.run_id == run_id)]

    def finished(self) -> list[Event]:
        return [e for e in self.items if e.event in ("run.finished", "run.failed")]

    def finished_for(self, run_id: str) -> list[Event]:
        return [e for e in self.finished() if e.run_id == run_id]

    async def wait(self, predicate: Any, timeout: float = 60.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(loop(), timeout)


@pytest.fixture
async def events(bus: Bus) -> AsyncIterator[Events]:
    collected = Events()
    sub = await bus.nc.subscribe("koda.events.>", cb=collected.on_msg)
    yield collected
    await sub.unsubscribe()


@asynccontextmanager
async def running_worker(settings: KodaSettings) -> AsyncIterator[WorkerService]:
    """A worker service in this process until the block ends (then a graceful stop)."""
    async with serving(WorkerService(settings)) as service:
        yield service


class WorkerProcess:
    """The worker as a real process (`python -m koda.services.worker`), to kill it hard."""

    def __init__(self, settings: KodaSettings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        s = self.settings
        env = {
            **os.environ,
            "KODA_HOME": str(s.home), "KODA_STATE_DIR": str(s.state_dir), "KODA_NATS_URL": s.nats_url,
            "KODA_PORT_BASE": str(s.port_base), "KODA_HEARTBEAT_INTERVAL": "0.5",
            "KODA_WORKER_ACK_WAIT": str(s.worker_ack_wait),
            "KODA_WORKER_CONCURRENCY": str(s.worker_concurrency),
            "KODA_MAX_DELIVER": str(s.max_deliver),
            "ANTHROPIC_BASE_URL": s.anthropic_base_url or "",
            "ANTHROPIC_API_KEY": API_KEY,
            # Public: the worker checks the gateway's signature on a decision it resumes with.
            "KODA_APPROVAL_VERIFY_KEY": s.approval_verify_key or "",
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "koda.services.worker"], env=env,
                                         stdout=out, stderr=out, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the worker and its CLI children: what a crash looks like."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
