"""Small readers shared by the gateway tests."""

from __future__ import annotations

from typing import Any

import nats

from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, Event
from tests.waits import eventually as eventually  # re-exported for the gateway tests


async def actions_published(bus: Bus, action: str) -> list[ActionRequest]:
    """Every message waiting on `koda.actions.<action>` (nothing consumes ACTIONS in these tests)."""
    info = await bus.js.stream_info("ACTIONS", subjects_filter=f"koda.actions.{action}")
    count = (info.state.subjects or {}).get(f"koda.actions.{action}", 0)
    out = []
    if count:
        first = info.state.first_seq
        for seq in range(first, info.state.last_seq + 1):
            try:
                msg = await bus.js.get_msg("ACTIONS", seq)
            except nats.js.errors.NotFoundError:
                continue
            if msg.subject == f"koda.actions.{action}" and msg.data:
                out.append(ActionRequest.from_bytes(msg.data))
    return out


async def decisions(bus: Bus, approval_id: str) -> list[Event]:
    """The `approval.decided` events of one approval: a person's decision is taken once."""
    return [e for e in await all_events(bus)
            if e.event == "approval.decided" and e.data.get("approval_id") == approval_id]


async def all_events(bus: Bus) -> list[Event]:
    info = await bus.js.stream_info("EVENTS")
    out: list[Event] = []
    if not info.state.messages:
        return out  # an empty stream has first_seq 0, which get_msg refuses
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await bus.js.get_msg("EVENTS", seq)
        except nats.js.errors.NotFoundError:
            continue
        if msg.data:
            out.append(Event.from_bytes(msg.data))
    return out


def buttons(message: dict[str, Any]) -> list[str]:
    """The custom ids of a message's buttons."""
    return [c.get("custom_id", "") for row in message.get("components") or []
            for c in row.get("components", [])]
