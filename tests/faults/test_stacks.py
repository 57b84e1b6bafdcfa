"""Stacks cannot cross: a NATS belongs to one home; a second copy of a service on one host, or
a port setting, never ends in a traceback or a silent mix-up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from koda.shared.bus import Bus
from koda.shared.errors import ForeignStack
from koda.shared.home import HomeLayout, init_home
from koda.shared.service import EXIT_CONFIG
from koda.shared.settings import KodaSettings

KODA = str(Path(sys.executable).parent / "koda")


def env_for(settings: KodaSettings, **extra: str) -> dict[str, str]:
    return {**os.environ, "KODA_HOME": str(settings.home), "KODA_STATE_DIR": str(settings.state_dir),
            "KODA_NATS_URL": settings.nats_url, "KODA_PORT_BASE": str(settings.port_base),
            "KODA_HEARTBEAT_INTERVAL": "0.5", **extra}


def service(name: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"koda.services.{name}"], env=env,
                          capture_output=True, text=True, timeout=timeout)


async def test_a_stack_refuses_the_nats_of_another_home(
        settings: KodaSettings, bus: Bus, tmp_path: Path) -> None:
    other = settings.model_copy(update={"home": tmp_path / "other-home",
                                        "state_dir": tmp_path / "other-state"})
    init_home(other)
    with pytest.raises(ForeignStack, match="another home"):
        await Bus.connect(other, "test")
    # The real worker of the other home stops at once with one clear line.
    done = await asyncio.to_thread(service, "worker", env_for(other))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "belongs to the Koda stack of another home" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing of the first stack was consumed: RUNS has no consumer of the other stack.
    assert [c.name async for c in _consumers(bus, "RUNS")] == []


async def _consumers(bus: Bus, stream: str):  # type: ignore[no-untyped-def]
    for info in await bus.js.consumers_info(stream):
        yield info


async def test_a_second_scheduler_on_one_host_fails_with_a_clear_error(
        settings: KodaSettings, bus: Bus) -> None:
    init_home(settings)
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "koda.services.scheduler", env=env_for(settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait for the first one's heartbeat: it holds the port.
        watcher = await bus.kv["health"].watch("scheduler.>")
        async for entry in watcher:
            if entry is not None and entry.value:
                break
        await watcher.stop()
        second = await asyncio.to_thread(service, "scheduler", env_for(settings))
    finally:
        first.terminate()
        await asyncio.wait_for(first.wait(), 30)
    assert second.returncode == EXIT_CONFIG, second.stderr
    assert "is in use: another scheduler" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr


def test_koda_nats_port_alone_moves_the_clients(settings: KodaSettings) -> None:
    init_home(settings)
    layout = HomeLayout(settings.expanded_home())
    layout.tasks.write_text(json.dumps({"timezone": "UTC", "tasks": [{"id": "chores",
                                                                      "prompt": "chores"}]}))
    port = settings.nats_url.rsplit(":", 1)[1]
    env = env_for(settings, KODA_NATS_PORT=port)
    del env["KODA_NATS_URL"]
    done = subprocess.run([KODA, "run", "chores"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=settings.home)
    assert done.returncode == 0 and "queued chores." in done.stdout, done.stderr
