"""Helpers for scheduler tests: write tasks.json, run a scheduler in this process, read the bus."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js.errors import NotFoundError

from koda.services.scheduler.clock import Clock
from koda.services.scheduler.service import SchedulerService
from koda.shared.bus import Bus
from koda.shared.messages import Event, RunRequest
from koda.shared.settings import KodaSettings
from tests.natsserver import free_port_block
from tests.scheduler.fake_clock import FakeClock


def write_tasks(settings: KodaSettings, tasks: list[dict[str, Any]], timezone: str = "UTC") -> Path:
    path = settings.expanded_home() / "tasks.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timezone": timezone, "tasks": tasks}, indent=2))
    return path


def task(task_id: str, cron: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "cron": cron, "prompt": f"do {task_id}", **extra}


class Running:
    """A scheduler serving in this process."""

    def __init__(self, service: SchedulerService, serving: asyncio.Task[int]) -> None:
        self.service = service
        self.serving = serving

    async def stop(self) -> None:
        self.service.stopping.set()
        await asyncio.wait_for(self.serving, 15)


async def start_scheduler(settings: KodaSettings, clock: Clock | None = None,
                          instance: str = "s1", own_ports: bool = False) -> Running:
    """Serve a scheduler; return once it has set up (and, on a fake clock, gone to sleep)."""
    update: dict[str, Any] = {"instance": instance}
    if own_ports:
        update["port_base"] = free_port_block(7) - 1
    service = SchedulerService(settings.model_copy(update=update), clock)
    serving = asyncio.create_task(service.serve(install_signals=False))
    await wait_for(lambda: hasattr(service, "failures") or serving.done(), 15)
    if serving.done():
        serving.result()
    if isinstance(clock, FakeClock):
        await clock.settled()
    return Running(service, serving)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


Stored = list[tuple[str, bytes, dict[str, str]]]


async def stream_messages(bus: Bus, stream: str, subject_prefix: str = "") -> Stored:
    """Every message still stored in a stream: (subject, data, headers)."""
    info = await bus.js.stream_info(stream)
    out: Stored = []
    if not info.state.messages:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await bus.js.get_msg(stream, seq)
        except NotFoundError:
            continue
        if msg.subject and msg.subject.startswith(subject_prefix):
            out.append((msg.subject, msg.data or b"", dict(msg.headers or {})))
    return out


async def run_requests(bus: Bus, task_id: str | None = None) -> list[RunRequest]:
    prefix = f"koda.runs.{task_id}" if task_id else "koda.runs."
    return [RunRequest.from_bytes(data) for _, data, _ in await stream_messages(bus, "RUNS", prefix)]


async def events(bus: Bus, kind: str) -> list[Event]:
    return [Event.from_bytes(data)
            for _, data, _ in await stream_messages(bus, "EVENTS", f"koda.events.{kind}")]


async def events_when(bus: Bus, kind: str, count: int = 1, timeout: float = 10.0) -> list[Event]:
    """The events of one kind once there are `count` (an event may land just after the state
    change a test waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await events(bus, kind)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def at(text: str) -> datetime:
    """An aware instant from ISO text (with its offset)."""
    return datetime.fromisoformat(text)


def metric(running: Running, name: str, **labels: str) -> float:
    value = running.service.registry.get_sample_value(name, labels)
    return value or 0.0
