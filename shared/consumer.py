"""Consuming a stream through a durable consumer: typed deliveries, retries as values, and no
silent drops. Work queues (RUNS, ACTIONS, SCRAPE) share one durable per stream; a reader of the
audit log (EVENTS) has its own, named for it, that starts at new events.

A handler returns (or raises) `RetryLater` to be delivered again after a delay, or `Permanent`
to be failed now; an exception is retried with exponential delay. A message that fails on its
last allowed delivery, or that JetStream gives up on because no handler ever answered (a crash
or a hang each time, reported by its max-deliveries advisory), becomes a `message.failed`
event. On EVENTS a failure is logged instead: an event about a failing event reader would feed
the very stream it failed on.

Poison is bounded: a message that does not decode (bad JSON, a field out of its pattern such
as a run id that is no KV key, an unknown `schema_version`) or that the handler calls
`Permanent` is terminated on its first delivery; a handler that keeps raising is given up
after `CRASH_LIMIT` deliveries. Messages waiting out a `RetryLater` delay still count as
unacknowledged, so the window is wide: a pile of delayed retries never blocks new work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from .errors import Permanent, RetryLater, Superseded
from .messages import FailedMessage, Message

if TYPE_CHECKING:
    from .bus import Bus

log = logging.getLogger("koda.shared.bus")

M = TypeVar("M", bound=Message)
#: Deliveries after which a handler that raised every time is given up on.
CRASH_LIMIT = 10
#: Unacknowledged messages (in hand plus delayed retries) the consumer may hold. Only the
#: semaphore bounds concurrency; this only has to be wider than any pile of delayed retries.
MAX_ACK_PENDING = 1024


def consumer_name(stream: str) -> str:
    """The one durable consumer a work-queue stream has, shared by every instance."""
    return f"{stream.lower()}-workers"


@dataclass
class Delivery(Generic[M]):
    """One delivered message, decoded, with its delivery count and a way to say 'still working'."""

    message: M
    subject: str
    attempt: int
    max_deliver: int
    raw: Msg

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_deliver

    async def progress(self) -> None:
        """Extend the ack deadline of a long job (JetStream `+WPI`)."""
        await self.raw.in_progress()


Handler = Callable[[Delivery[M]], Awaitable[RetryLater | Permanent | None]]


def retry_delay(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential delay for a handler that crashed, before JetStream delivers again."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


class DurableConsumer(Generic[M]):
    """Pulls one durable consumer of a stream and runs a handler per message."""

    def __init__(self, bus: Bus, stream: str, model: type[M], handler: Handler[M], *,
                 filter_subject: str | None, concurrency: int, ack_wait: float,
                 max_deliver: int, durable: str | None = None) -> None:
        self.bus, self.stream, self.model, self.handler = bus, stream, model, handler
        self.subject = filter_subject or f"koda.{stream.lower()}.>"
        self.durable = durable or consumer_name(stream)
        self.concurrency, self.ack_wait, self.max_deliver = concurrency, ack_wait, max_deliver
        #: A work queue reports what it gives up on as `message.failed`; an EVENTS reader logs it.
        self.reports = stream != "EVENTS"

    async def run(self, stop: asyncio.Event, in_flight: set[asyncio.Task[None]]) -> None:
        """Fetch until `stop` is set; handler tasks go in `in_flight` for a graceful stop."""
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subject=self.subject,
            max_ack_pending=max(self.concurrency * 4, MAX_ACK_PENDING),
            # An audit-log reader starts at new events when first created (not the whole log).
            deliver_policy=DeliverPolicy.ALL if self.reports else DeliverPolicy.NEW,
        )
        sub = await self.bus.js.pull_subscribe(self.subject, durable=self.durable,
                                               stream=self.stream, config=config)
        advisory = await self._watch_max_deliveries() if self.reports else None
        slots = asyncio.Semaphore(self.concurrency)
        try:
            while not stop.is_set():
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                try:
                    msgs = await sub.fetch(1, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    slots.release()
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                        # A cluster's stream is electing a new leader (a node went): wait.
                        nats.js.errors.ServiceUnavailableError):
                    slots.release()
                    await asyncio.sleep(0.5)
                    continue
                for raw in msgs:
                    task = asyncio.create_task(self._handle(raw, slots))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
        finally:
            if advisory is not None:
                await _quietly(advisory.unsubscribe())
            await _quietly(sub.unsubscribe())  # the connection may already be gone

    async def _handle(self, raw: Msg, slots: asyncio.Semaphore) -> None:
        attempt = raw.metadata.num_delivered
        outcome: RetryLater | Permanent | None
        try:
            try:
                message = self.model.from_bytes(raw.data)
            except ValidationError as exc:
                raise Permanent(f"malformed {self.model.__name__}: {_describe(exc)}") from exc
            outcome = await self.handler(Delivery(message, raw.subject, attempt, self.max_deliver, raw))
        except (RetryLater, Permanent) as exc:
            outcome = exc
        except Superseded as exc:
            log.warning("delivery superseded; leaving it to the newer attempt",
                        extra={"subject": raw.subject, "reason": str(exc)})
            return
        except asyncio.CancelledError:
            # Shutdown cut this handler short: let JetStream deliver it again soon.
            await _quietly(raw.nak(delay=1.0))
            raise
        except Exception as exc:  # a handler bug must not kill the consumer
            log.exception("handler failed", extra={"subject": raw.subject, "attempt": attempt})
            outcome = _Crash(retry_delay(attempt), f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()
        try:
            if outcome is None:
                await raw.ack()
            elif isinstance(outcome, RetryLater) and attempt < self._limit(outcome):
                await raw.nak(delay=outcome.delay)
            else:
                await self._fail(raw.subject, raw.data, attempt, str(outcome),
                                 raw.metadata.sequence.stream)
                await raw.term()
        except Exception:  # ack lost: JetStream redelivers after ack_wait
            log.warning("could not acknowledge", extra={"subject": raw.subject}, exc_info=True)

    def _limit(self, outcome: RetryLater) -> int:
        return min(self.max_deliver, CRASH_LIMIT) if isinstance(outcome, _Crash) else self.max_deliver

    async def _fail(self, subject: str, data: bytes, deliveries: int, error: str,
                    seq: int | None) -> None:
        if not self.reports:
            log.error("event given up", extra={"subject": subject, "consumer": self.durable,
                                               "deliveries": deliveries, "error": error})
            return
        failed = FailedMessage(
            stream=self.stream, subject=subject, deliveries=deliveries, error=error,
            stream_seq=seq, payload_preview=data[:500].decode("utf-8", "replace"),
        )
        log.error("message failed", extra={"subject": subject, "error": error})
        await self.bus.emit(self.bus.event(
            "message.failed", f"{subject} failed after {deliveries} deliveries: {error}",
            severity="error", task=_task_from_subject(subject),
            data=failed.model_dump(mode="json"),
        ))

    async def _watch_max_deliveries(self) -> Any:
        """Turn JetStream's max-deliveries advisory (a handler that never answered) into an event.

        A queue group makes one instance of the service report it, not every instance.
        """
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.durable}"

        async def on_advisory(msg: Msg) -> None:
            info = json.loads(msg.data)
            seq = int(info.get("stream_seq", 0))
            try:
                stored = await self.bus.js.get_msg(self.stream, seq)
                subject_, data = stored.subject or "?", stored.data or b""
            except Exception:  # the message may be gone; report what we know
                subject_, data = "?", b""
            await self._fail(subject_, data, int(info.get("deliveries", 0)),
                             "no answer from any handler (crashed or timed out each time)", seq)

        return await self.bus.nc.subscribe(subject, queue=f"{self.durable}-advisory", cb=on_advisory)


class _Crash(RetryLater):
    """A handler raised: retried, but only up to CRASH_LIMIT deliveries."""


def _task_from_subject(subject: str) -> str | None:
    parts = subject.split(".")
    return parts[2] if len(parts) >= 3 and parts[1] == "runs" else None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


async def _quietly(aw: Awaitable[Any]) -> None:
    try:
        await aw
    except Exception:
        pass
