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
import json
import logging
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from koda.shared.bus import Bus, Delivery
from koda.shared.controls import pause_task
from koda.shared.events import BadEvent, RunEnded
from koda.shared.messages import Event
from koda.shared.tasks import Task

log = logging.getLogger(__name__)
DURABLE = "scheduler-failures"
SUBJECT = "koda.events.run.*"  # run.finished and run.failed; the others are skipped


class FailureCounter:
    """Counts consecutive failures per task and pauses a task at its threshold."""

    def __init__(self, bus: Bus, lookup: Callable[[str], Task | None]) -> None:
        self.bus = bus
        self.lookup = lookup
        self.kv = bus.kv["scheduler"]

    async def run(self, stop: asyncio.Event) -> None:
        async def handle(delivery: Delivery[Event]) -> None:
            await self.handle(delivery.message)  # a failure is retried (shared/consumer.py)

        await self.bus.consume("EVENTS", Event, handle, stop=stop, durable=DURABLE,
                               filter_subject=SUBJECT, max_deliver=5, ack_wait=30)

    async def handle(self, event: Event) -> None:
        if not event.task or event.event not in RunEnded.kinds:
            return
        try:
            run = RunEnded.of(event)
        except BadEvent as exc:  # from another version: not counted either way
            log.warning("not counting a run end: %s", exc)
            return
        key = f"failures.{event.task}"
        for _ in range(10):  # compare-and-set: another instance may count at the same moment
            try:
                entry = await self.kv.get(key)
                count, revision = json.loads(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                count, revision = 0, 0
            if run.done:
                if count:
                    await self.kv.put(key, b"0")
                return
            if run.cause in ("config", "rejected"):
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
                await self._pause(event, run, count)
            return

    async def _pause(self, event: Event, run: RunEnded, count: int) -> None:
        assert event.task is not None
        reason = f"{count} consecutive failed runs (last: {run.outcome}, {event.run_id})"
        log.warning("task paused", extra={"task": event.task, "reason": reason})
        await pause_task(self.bus, event.task, "scheduler", reason, failures=count,
                         text=f"{event.task} paused after {reason}; resume it with `koda resume "
                              f"{event.task}` (or the console, or Discord)")
