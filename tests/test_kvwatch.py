"""A KV view stays live across a NATS restart (nats-py's bare watch resumes only after ~10 s)."""

from __future__ import annotations

import asyncio
import time

from koda.shared.bus import Bus
from koda.shared.kvwatch import KeyWatch
from koda.shared.settings import KodaSettings
from tests.natsserver import NatsServer
from tests.waits import eventually


async def test_a_key_watch_sees_changes_within_seconds_of_a_nats_restart(
        settings: KodaSettings, nats_server: NatsServer, bus: Bus) -> None:
    view: dict[str, bytes] = {}

    def apply(key: str, value: bytes | None) -> None:
        if value is None:
            view.pop(key, None)
        else:
            view[key] = value

    watched = await Bus.connect(settings, "watcher", timeout=10)
    watch = KeyWatch(watched, "health", ">", apply)
    try:
        await bus.kv["health"].put("a", b"1")
        await bus.kv["health"].put("gone", b"x")
        await watch.start()
        await eventually(lambda: view == {"a": b"1", "gone": b"x"})
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        back = time.monotonic()
        await eventually(lambda: bus.nc.is_connected and watched.nc.is_connected)
        await bus.kv["health"].purge("gone")
        await bus.kv["health"].put("a", b"2")
        # The bare watch would show this after two missed 5 s idle heartbeats; ours at once.
        await eventually(lambda: view == {"a": b"2"}, timeout=5)
        assert time.monotonic() - back < 5
        assert watch.restarts >= 1
    finally:
        await watch.stop()
        await watched.close()
