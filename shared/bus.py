"""The NATS JetStream bus: connection, the streams and buckets of DESIGN.md, typed publish/consume.

A consumer handler returns (or raises) `RetryLater` to be delivered again after a delay, or
`Permanent` to be failed now. A message that fails on its last allowed delivery, or that JetStream
gives up on because its handler never answered (a crash each time), becomes a `message.failed`
event: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from .errors import BusError, Permanent, RetryLater
from .messages import Event, FailedMessage, Message
from .settings import KodaSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    work_queue: bool
    duplicate_window: float = 120.0
    max_age: float | None = None


def stream_specs(settings: KodaSettings) -> list[StreamSpec]:
    """The four streams of the bus contract."""
    return [
        # Cron fires are de-duplicated by message id; an hour covers any scheduler restart race.
        StreamSpec("RUNS", ["koda.runs.>"], work_queue=True, duplicate_window=3600.0),
        StreamSpec("ACTIONS", ["koda.actions.>"], work_queue=True, duplicate_window=3600.0),
        StreamSpec("SCRAPE", ["koda.scrape.>"], work_queue=True),
        StreamSpec(
            "EVENTS", ["koda.events.>"], work_queue=False,
            max_age=settings.events_max_age_days * 86400.0,
        ),
    ]


def bucket_specs(settings: KodaSettings) -> list[KeyValueConfig]:
    """The KV buckets of the bus contract."""
    return [
        KeyValueConfig(bucket="approvals", history=5, storage=StorageType.FILE),
        KeyValueConfig(bucket="health", ttl=settings.heartbeat_ttl, storage=StorageType.FILE),
        KeyValueConfig(bucket="scheduler", history=1, storage=StorageType.FILE),
        KeyValueConfig(bucket="runs", history=5, storage=StorageType.FILE),
        KeyValueConfig(bucket="limits", history=5, storage=StorageType.FILE),
        # Action results by idempotency key (a repeat returns the record); scraper site state.
        KeyValueConfig(bucket="actions", history=1, storage=StorageType.FILE,
                       ttl=max(90, settings.events_max_age_days) * 86400.0),
        KeyValueConfig(bucket="scraper", history=1, storage=StorageType.FILE),
    ]


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


@dataclass
class Bus:
    """A connected NATS client with JetStream, the KV buckets, and typed helpers."""

    nc: NATS
    js: JetStreamContext
    settings: KodaSettings
    service: str
    kv: dict[str, KeyValue] = field(default_factory=dict)

    @classmethod
    async def connect(
        cls, settings: KodaSettings, service: str, *, timeout: float = 30.0, ensure: bool = True
    ) -> Bus:
        """Connect (retrying until `timeout` so services may start before NATS), then set up."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                # nats-py retries a first connection forever when reconnects are unlimited:
                # bound each attempt so a dead server gives our clear error, not a hang.
                nc = await asyncio.wait_for(nats.connect(
                    settings.nats_url,
                    name=f"koda-{service}",
                    user=settings.nats_user,
                    password=settings.nats_password.get_secret_value()
                    if settings.nats_password else None,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=_log_error,
                    disconnected_cb=_log_disconnect,
                    reconnected_cb=_log_reconnect,
                ), timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                break
            except Exception as exc:
                last_error = exc
                await asyncio.sleep(0.2)
        else:
            raise BusError(f"cannot reach NATS at {settings.nats_url}: {last_error}")
        bus = cls(nc=nc, js=nc.jetstream(), settings=settings, service=service)
        if ensure:
            await bus.ensure()
        return bus

    async def ensure(self) -> None:
        """Create the streams and buckets, or leave them as they are: safe from every service."""
        for spec in stream_specs(self.settings):
            config = StreamConfig(
                name=spec.name,
                subjects=spec.subjects,
                retention=RetentionPolicy.WORK_QUEUE if spec.work_queue else RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=spec.duplicate_window,
                max_age=spec.max_age,
                max_msg_size=MAX_MESSAGE_BYTES,
                discard=DiscardPolicy.OLD,
            )
            await self._ensure_stream(config)
        for kv_config in bucket_specs(self.settings):
            try:
                self.kv[kv_config.bucket] = await self.js.key_value(kv_config.bucket)
            except BucketNotFoundError:
                self.kv[kv_config.bucket] = await self.js.create_key_value(kv_config)

    async def _ensure_stream(self, config: StreamConfig) -> None:
        assert config.name is not None
        for _ in range(3):
            try:
                await self.js.stream_info(config.name)
                return
            except NotFoundError:
                pass
            try:
                await self.js.add_stream(config)
                return
            except nats.js.errors.BadRequestError:
                # Another service created it between our two calls; look again.
                await asyncio.sleep(0.05)
        raise BusError(f"could not create stream {config.name}")

    async def close(self) -> None:
        """Flush what we published and leave the server cleanly."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()

    # --- publishing -------------------------------------------------------------------------

    async def publish(
        self, subject: str, message: Message, *, msg_id: str | None = None, timeout: float = 5.0
    ) -> int:
        """Publish durably; returns the stream sequence. `msg_id` makes a repeat a no-op."""
        payload = message.to_bytes()
        if len(payload) > MAX_MESSAGE_BYTES:
            raise Permanent(f"message for {subject} is {len(payload)} bytes; keep files in files")
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self.js.publish(subject, payload, timeout=timeout, headers=headers)
        return ack.seq

    async def emit(self, event: Event) -> None:
        """Append an event to the audit log (EVENTS). Never raises: events must not break work."""
        try:
            await self.publish(f"koda.events.{event.event}", event)
        except Exception:
            log.exception("could not emit event", extra={"event": event.event})

    def event(self, event: str, summary: str = "", **fields: Any) -> Event:
        return Event(event=event, service=self.service, summary=summary, **fields)

    # --- consuming --------------------------------------------------------------------------

    async def consume(
        self,
        stream: str,
        model: type[M],
        handler: Handler[M],
        *,
        stop: asyncio.Event,
        filter_subject: str | None = None,
        concurrency: int = 1,
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        in_flight: set[asyncio.Task[None]] | None = None,
    ) -> None:
        """Pull from the stream's shared durable consumer until `stop` is set.

        At most `concurrency` handlers run at once; their tasks are added to `in_flight` so the
        service can wait for them on shutdown.
        """
        max_deliver = max_deliver or self.settings.max_deliver
        durable = consumer_name(stream)
        subject = filter_subject or f"koda.{stream.lower()}.>"
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            filter_subject=subject,
            max_ack_pending=max(concurrency * 4, 16),
        )
        sub = await self.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
        advisory = await self._watch_max_deliveries(stream, durable)
        tasks = in_flight if in_flight is not None else set()
        slots = asyncio.Semaphore(concurrency)
        try:
            while not stop.is_set():
                await slots.acquire()
                if stop.is_set():
                    slots.release()
                    break
                try:
                    msgs = await sub.fetch(1, timeout=0.5)
                except nats.errors.TimeoutError:
                    slots.release()
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                    slots.release()
                    await asyncio.sleep(0.5)
                    continue
                for raw in msgs:
                    task = asyncio.create_task(
                        self._handle(stream, model, handler, raw, max_deliver, slots)
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            await advisory.unsubscribe()
            try:
                await sub.unsubscribe()
            except Exception:
                pass

    async def _handle(
        self,
        stream: str,
        model: type[M],
        handler: Handler[M],
        raw: Msg,
        max_deliver: int,
        slots: asyncio.Semaphore,
    ) -> None:
        attempt = raw.metadata.num_delivered
        try:
            try:
                message = model.from_bytes(raw.data)
            except ValidationError as exc:
                raise Permanent(f"malformed {model.__name__}: {_describe(exc)}") from exc
            delivery = Delivery(message, raw.subject, attempt, max_deliver, raw)
            outcome = await handler(delivery)
        except (RetryLater, Permanent) as exc:
            outcome = exc
        except asyncio.CancelledError:
            # Shutdown cut this handler short: let JetStream deliver it again soon.
            await _quietly(raw.nak(delay=1.0))
            raise
        except Exception as exc:
            log.exception("handler failed", extra={"subject": raw.subject, "attempt": attempt})
            outcome = RetryLater(retry_delay(attempt), f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()
        try:
            if outcome is None:
                await raw.ack()
            elif isinstance(outcome, RetryLater) and attempt < max_deliver:
                await raw.nak(delay=outcome.delay)
            else:
                await self._fail(stream, raw, attempt, str(outcome))
                await raw.term()
        except Exception:
            log.warning("could not acknowledge", extra={"subject": raw.subject}, exc_info=True)

    async def _fail(self, stream: str, raw: Msg, deliveries: int, error: str, seq: int | None = None) -> None:
        failed = FailedMessage(
            stream=stream,
            subject=raw.subject,
            deliveries=deliveries,
            error=error,
            stream_seq=seq if seq is not None else raw.metadata.sequence.stream,
            payload_preview=raw.data[:500].decode("utf-8", "replace"),
        )
        task = _task_from_subject(raw.subject)
        log.error("message failed", extra={"subject": raw.subject, "error": error})
        await self.emit(
            self.event(
                "message.failed",
                f"{raw.subject} failed after {deliveries} deliveries: {error}",
                severity="error",
                task=task,
                data=failed.model_dump(mode="json"),
            )
        )

    async def _watch_max_deliveries(self, stream: str, durable: str) -> Any:
        """Turn JetStream's max-deliveries advisory (a handler that never answered) into an event.

        A queue group makes one instance of the service report it, not every instance.
        """
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}"

        async def on_advisory(msg: Msg) -> None:
            info = json.loads(msg.data)
            seq = int(info.get("stream_seq", 0))
            try:
                stored = await self.js.get_msg(stream, seq)
                subject_, data = stored.subject or "?", stored.data or b""
            except Exception:
                subject_, data = "?", b""
            fake = _StoredMsg(subject_, data)
            await self._fail(stream, fake, int(info.get("deliveries", 0)),  # type: ignore[arg-type]
                             "no answer from any handler (crashed or timed out each time)", seq)

        return await self.nc.subscribe(subject, queue=f"{durable}-advisory", cb=on_advisory)


@dataclass
class _StoredMsg:
    subject: str
    data: bytes


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


async def _log_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _log_disconnect() -> None:
    log.warning("disconnected from nats")


async def _log_reconnect() -> None:
    log.info("reconnected to nats")
