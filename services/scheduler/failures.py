"""Pause a task after N consecutive failed runs, counted from the worker's run-end events.

Every scheduler instance pulls from one durable consumer, so each event is counted once; the
count lives in the `scheduler` KV (`failures.<task>`, compare-and-set) so it survives restarts
and leader changes. A run ends in `run.finished` (outcome done) or `run.failed` (any other
outcome); a `data.outcome` other than "done" is a failure, whichever event carries it,
except one caused by invalid config (`data.cause` = "config") or a person's rejection of a paused
call (`rejected`), which never count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from koda.shared.bus import Bus
from koda.shared.controls import pause_task
from koda.shared.messages import Event
from koda.shared.tasks import Task

log = logging.getLogger(__name__)
DURABLE = "scheduler-failures"
SUBJECT = "koda.events.run.*"  # run.finished and run.failed; the others are skipped
ENDS = frozenset({"run.finished", "run.failed"})


class FailureCounter:
    """Counts consecutive failures per task and pauses a task at its threshold."""

    def __init__(self, bus: Bus, lookup: Callable[[str], Task | None]) -> None:
        self.bus = bus
        self.lookup = lookup
        self.kv = bus.kv["scheduler"]

    async def run(self, stop: asyncio.Event) -> None:
        config = ConsumerConfig(durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.NEW, filter_subject=SUBJECT,
                                max_deliver=5, ack_wait=30)
        sub = await self.bus.js.pull_subscribe(SUBJECT, durable=DURABLE, stream="EVENTS",
                                               config=config)
        try:
            while not stop.is_set():
                try:
                    msgs = await sub.fetch(20, timeout=5)
                except (nats.errors.TimeoutError, TimeoutError):  # a batch fetch raises the builtin
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    try:
                        await self.handle(Event.from_bytes(msg.data))
                    except Exception:
                        log.exception("could not count a run outcome")
                        await msg.nak(delay=1)
                        continue
                    await msg.ack()
        finally:
            # An abandoned pull subscription holds the connection's drain for its full timeout.
            # On a closed connection there is nothing to unsubscribe, and raising here would
            # hide the cancellation that brought us here.
            with contextlib.suppress(nats.errors.ConnectionClosedError):
                await sub.unsubscribe()

    async def handle(self, event: Event) -> None:
        if not event.task or event.event not in ENDS:
            return
        key = f"failures.{event.task}"
        for _ in range(10):  # compare-and-set: another instance may count at the same moment
            try:
                entry = await self.kv.get(key)
                count, revision = json.loads(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                count, revision = 0, 0
            if event.data.get("outcome", "done" if event.event == "run.finished" else "failed") == "done":
                if count:
                    await self.kv.put(key, b"0")
                return
            if event.data.get("cause") in ("config", "rejected"):
                # A broken tasks.json is the file's fault, a rejected call a person's choice:
                # neither is the task failing, so never a pause.
                return
            count += 1
            task = self.lookup(event.task)
            threshold = task.pause_after_failures if task else None
            pause = threshold is not None and count >= threshold
            try:
                await self.kv.update(key, json.dumps(0 if pause else count).encode(), last=revision)
            except KeyWrongLastSequenceError:
                continue
            if pause:
                await self._pause(event, count)
            return

    async def _pause(self, event: Event, count: int) -> None:
        assert event.task is not None
        reason = f"{count} consecutive failed runs (last: {event.data.get('outcome')}, {event.run_id})"
        log.warning("task paused", extra={"task": event.task, "reason": reason})
        await pause_task(self.bus, event.task, "scheduler", reason, data={"failures": count},
                         text=f"{event.task} paused after {reason}; resume it with `koda resume "
                              f"{event.task}` (or the console, or Discord)")
