"""Reading heartbeats from the `health` KV: for `koda status`, `koda health` and the watchdog."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.js.errors import NoKeysError

from .bus import Bus
from .messages import Heartbeat
from .settings import KodaSettings


async def read_heartbeats(bus: Bus) -> list[Heartbeat]:
    """Every live heartbeat (expired ones are gone from the bucket by its TTL)."""
    kv = bus.kv["health"]
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    beats = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:
            continue
        if entry.value:
            beats.append(Heartbeat.from_bytes(entry.value))
    return beats


def freshest_ages(beats: list[Heartbeat], now: datetime | None = None) -> dict[str, float]:
    """Seconds since each service's newest heartbeat (over all its instances)."""
    now = now or datetime.now(UTC)
    ages: dict[str, float] = {}
    for beat in beats:
        age = max(0.0, (now - beat.at).total_seconds())
        ages[beat.service] = min(age, ages.get(beat.service, age))
    return ages


async def heartbeat_ages(settings: KodaSettings, timeout: float = 3.0) -> dict[str, float]:
    """Connect, read, disconnect; an unreachable bus gives no heartbeats rather than an error."""
    try:
        bus = await Bus.connect(settings, "cli", timeout=timeout, ensure=False)
    except Exception:
        return {}
    try:
        try:
            bus.kv["health"] = await bus.js.key_value("health")
        except Exception:
            return {}
        return freshest_ages(await read_heartbeats(bus))
    finally:
        await bus.nc.close()


def heartbeat_ages_sync(settings: KodaSettings, timeout: float = 3.0) -> dict[str, float]:
    return asyncio.run(heartbeat_ages(settings, timeout))
