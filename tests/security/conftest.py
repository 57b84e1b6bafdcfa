"""Fixtures for the adversarial suite: a live stack whose worker talks to a scripted hostile
model, and helpers to start a run in it and collect what reached the model API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from koda.shared.bus import Bus
from koda.shared.messages import Event, RunRequest
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import API_KEY, FakeAnthropic, say
from tests.stack import Stack, Violations, nats_client


class HostileStack(Stack):
    """A whole local stack whose worker's model is `api`, a script the test sets per attack."""

    def __init__(self, root: Path, api: FakeAnthropic) -> None:
        super().__init__(root, extra_env={"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": API_KEY})
        self.api = api

    def write_tasks(self, *tasks: dict[str, Any]) -> None:
        path = self.home / "tasks.json"
        path.write_text(json.dumps({"timezone": "UTC", "tasks": list(tasks)}, indent=1))

    def as_user(self, user: str) -> KodaSettings:
        """Settings that connect to the stack's NATS as one of its users (`koda` is the CLI's)."""
        return self.settings.model_copy(update=self.credentials(user))

    async def run(self, task: str, timeout: float = 120) -> Event:
        """Start a manual run of `task` (as the `koda` CLI would) and wait for its end event."""
        bus = await Bus.connect(self.as_user("koda"), "koda", ensure=False)
        try:
            ended = await bus.nc.subscribe("koda.events.run.*")
            now = datetime.now(UTC)
            request = RunRequest(task=task, run_id=f"{task}.m{int(now.timestamp() * 1000)}",
                                 scheduled_for=now, trigger="manual")
            await bus.publish(f"koda.runs.{task}", request, msg_id=request.run_id)
            async with asyncio.timeout(timeout):
                while True:
                    event = Event.from_bytes((await ended.next_msg(timeout=timeout)).data)
                    if event.run_id == request.run_id and event.event in ("run.finished", "run.failed"):
                        return event
        finally:
            await bus.close()


@pytest.fixture(scope="module")
def hostile_api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(say("nothing to do")) as api:
        yield api


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory: pytest.TempPathFactory,
                  hostile_api: FakeAnthropic) -> Iterator[HostileStack]:
    running = HostileStack(tmp_path_factory.mktemp("hostile"), hostile_api)
    running.up()
    try:
        yield running
    finally:
        running.down()


async def connect_as(stack: Stack, user: str) -> tuple[Any, Violations]:
    """A plain nats-py client logged in as one of the stack's users, and its error collector."""
    return await nats_client(stack.env["KODA_NATS_URL"], user,
                             stack.credentials(user)["nats_password"].get_secret_value())
