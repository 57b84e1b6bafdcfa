"""Reading the EVENTS stream (the audit log) from a synchronous test."""

from __future__ import annotations

import asyncio

import nats
from nats.js.api import DeliverPolicy

from koda.shared.messages import Event


async def _read(url: str, subject: str) -> list[Event]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        out: list[Event] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                return out
            out.append(Event.from_bytes(msg.data))
    finally:
        await nc.close()


def read_events(url: str, subject: str = "koda.events.>") -> list[Event]:
    """Every event so far on `subject`, oldest first."""
    return asyncio.run(_read(url, subject))
