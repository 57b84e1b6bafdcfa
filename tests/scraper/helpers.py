"""Helpers the actions and scraper tests share: run a service in this process, ask it over the
bus and wait for the reply, count events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from koda.shared.bus import Bus
from koda.shared.home import init_home
from koda.shared.messages import Message
from koda.shared.service import Service
from koda.shared.settings import KodaSettings
from tests.inprocess import serving

__all__ = ["ask", "event_count", "events", "make_home", "metric", "serving"]

R = TypeVar("R", bound=Message)


def make_home(settings: KodaSettings, env: dict[str, str], files: dict[str, Any]) -> Path:
    """A home from the template, a `.env` with `env`, and JSON `files` (relative path -> data)."""
    init_home(settings)
    home = settings.expanded_home()
    (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    for name, data in files.items():
        path = home / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
    return home


async def ask(bus: Bus, subject: str, request: Message, result: type[R], timeout: float = 60) -> R:
    """Publish `request` durably with a reply inbox and wait for the service's answer."""
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox, max_msgs=1)
    await bus.publish(subject, request.model_copy(update={"reply_subject": inbox}))
    msg = await sub.next_msg(timeout=timeout)
    return result.from_bytes(msg.data)  # type: ignore[no-any-return]


async def event_count(bus: Bus, kind: str) -> int:
    info = await bus.js.stream_info("EVENTS", subjects_filter=f"koda.events.{kind}")
    return int((info.state.subjects or {}).get(f"koda.events.{kind}", 0))


async def events(bus: Bus, kind: str) -> list[dict[str, Any]]:
    """Every event of one kind in the EVENTS stream, oldest first."""
    count = await event_count(bus, kind)
    if not count:
        return []
    sub = await bus.js.subscribe(f"koda.events.{kind}", ordered_consumer=True)
    out = []
    try:
        for _ in range(count):
            msg = await sub.next_msg(timeout=5)
            out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def metric(service: Service, name: str, **labels: str) -> float | None:
    value = service.registry.get_sample_value(name, labels)
    return None if value is None else float(value)
