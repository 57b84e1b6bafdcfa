"""Shared set-up of the worker benchmarks: a real NATS server, the scripted fake Anthropic API,
an initialised home and an in-process worker. Not a benchmark itself."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout, init_home
from koda.shared.messages import Event
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import API_KEY, FakeAnthropic
from tests.natsserver import NatsServer, free_port_block

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Env:
    settings: KodaSettings
    api: FakeAnthropic
    bus: Bus
    root: Path
    events: list[Event]


@asynccontextmanager
async def bench_env(**overrides: Any) -> AsyncIterator[Env]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["HOME"] = str(root / "user")  # the CLI keeps its state here, not in ~
        (root / "user").mkdir()
        nats = NatsServer(root / "nats")
        nats.start()
        api = FakeAnthropic().start()
        try:
            settings = KodaSettings(
                home=root / "home", state_dir=root / "state", nats_url=nats.url,
                port_base=free_port_block(7) - 1, heartbeat_interval=0.5, drain_timeout=5.0,
                anthropic_base_url=api.url, anthropic_api_key=SecretStr(API_KEY), **overrides)
            init_home(settings)
            bus = await Bus.connect(settings, "bench", timeout=10)
            events: list[Event] = []

            async def on_event(msg: Any) -> None:
                events.append(Event.from_bytes(msg.data))

            sub = await bus.nc.subscribe("koda.events.>", cb=on_event)
            try:
                yield Env(settings, api, bus, root, events)
            finally:
                await sub.unsubscribe()
                await bus.close()
        finally:
            api.stop()
            nats.stop()


def write_tasks(settings: KodaSettings, *tasks: dict[str, Any]) -> None:
    HomeLayout(settings.expanded_home()).tasks.write_text(json.dumps({"tasks": list(tasks)}))


async def wait_for(predicate: Any, timeout: float = 60.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.002)
    await asyncio.wait_for(loop(), timeout)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def save(name: str, result: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    fields = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in result.items()
                      if not isinstance(v, (dict, list)))
    print(f"RESULT {name} {fields}")
