"""Reading the audit log (EVENTS) for Discord: a durable consumer of its own, and a look back.

The gateway's consumer `gateway-events` is separate from any other service's, so every event
reaches Discord once whatever else reads the stream. It starts at new events when first created
(pending approvals are recovered from the approvals KV, not from history). An event that cannot
be delivered (Discord down, bot not connected yet) is retried with a delay (shared/consumer.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from koda.shared.bus import Bus, Delivery
from koda.shared.errors import Permanent, RetryLater
from koda.shared.events import BadEvent
from koda.shared.messages import Event

log = logging.getLogger(__name__)
DURABLE = "gateway-events"
MAX_DELIVER = 20
#: What the bot acts on; the rest of the audit log is not its business.
SUBJECTS = ("approval.", "run.finished", "run.failed", "alert", "incident.", "scrape.needs_human",
            "agent.notify")


def wanted(kind: str) -> bool:
    return kind.startswith(SUBJECTS)


async def consume_events(bus: Bus, deliver: Callable[[Event], Awaitable[None]],
                         stop: asyncio.Event, retry_delay: float = 3.0) -> None:
    """Hand each wanted event to `deliver` until `stop`; a failure is retried later."""

    async def handle(delivery: Delivery[Event]) -> RetryLater | Permanent | None:
        event = delivery.message
        if not wanted(event.event):
            return None
        try:
            await deliver(event)
        except BadEvent as exc:  # its data fits no model we know: no retry can help
            return Permanent(str(exc))
        except Exception as exc:
            log.warning("could not deliver event to Discord",
                        extra={"event": event.event, "attempt": delivery.attempt,
                               "error": f"{type(exc).__name__}: {exc}"})
            return RetryLater(retry_delay, f"{type(exc).__name__}: {exc}")
        return None

    await bus.consume("EVENTS", Event, handle, stop=stop, durable=DURABLE, ack_wait=60,
                      max_deliver=MAX_DELIVER, filter_subject="koda.events.>")


async def _read(bus: Bus, config: ConsumerConfig, limit: int | None,
                last: Callable[[Msg], bool], subject: str = "koda.events.>") -> list[Event]:
    """Events from a throwaway ordered consumer, oldest first, until `last(msg)` or `limit`."""
    sub = await bus.js.subscribe(subject, ordered_consumer=True, config=config)
    out: list[Event] = []
    try:
        while limit is None or len(out) < limit:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                break
            try:
                out.append(Event.from_bytes(msg.data))
            except ValueError:
                pass  # not an event we can read: skip it, keep the rest
            if last(msg):
                break
    finally:
        await sub.unsubscribe()
    return out


async def events_since(bus: Bus, since: datetime, limit: int = 5000) -> list[Event]:
    """Events from `since` until now."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    return await _read(bus, config, limit, lambda msg: msg.metadata.num_pending == 0)


async def latest_of(bus: Bus, kind: str, count: int = 500) -> list[Event]:
    """The newest `count` events of one kind, newest first."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    out = await _read(bus, config, None, lambda msg: msg.metadata.num_pending == 0,
                      subject=f"koda.events.{kind}")
    return out[::-1][:count]


async def recent_events(bus: Bus, count: int = 100) -> list[Event]:
    """The last `count` events of the audit log, newest first."""
    info = await bus.js.stream_info("EVENTS")
    last = info.state.last_seq
    if not last or not info.state.messages:
        return []
    start = max(info.state.first_seq, last - count + 1)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
    out = await _read(bus, config, count, lambda msg: msg.metadata.sequence.stream >= last)
    return out[::-1]
