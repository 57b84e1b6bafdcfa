"""The NATS JetStream bus: connection, the streams and buckets of docs/contracts.md, typed publish.

Consuming a work queue (retries as values, failed events instead of silent drops) lives in
consumer.py; `Bus.consume` is its front door.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from .consumer import Delivery, DurableConsumer, Handler, consumer_name, retry_delay
from .errors import BusError, ForeignStack, NoReply, Permanent
from .events import EventData
from .messages import ActionRequest, Event, Message, ScrapeRequest
from .settings import KodaSettings
from .supervised import Backoff, keep_running

# Re-exported: services import these from the bus.
__all__ = ["Bus", "Delivery", "Handler", "bucket_specs", "consumer_name", "retry_delay",
           "stream_specs"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
R = TypeVar("R", ActionRequest, ScrapeRequest)
Q = TypeVar("Q", bound=Message)
#: Who answers a request on `koda.<queue>.…`, for the `NoReply` message.
ANSWERERS = {"actions": "the actions service", "scrape": "the scraper"}
MAX_MESSAGE_BYTES = 1024 * 1024
#: How long a paused session's transcript stays in the SESSIONS stream: longer than the longest
#: approval timeout tasks.json allows (30 days), so any decision finds its session.
SESSION_RETENTION_DAYS = 31
#: Stream metadata key holding the id of the home whose stack created the stream.
HOME_KEY = "koda_home_id"


def home_id(settings: KodaSettings) -> str:
    """A short id of the agent home: which stack a NATS's streams belong to."""
    return hashlib.sha256(str(settings.expanded_home()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    work_queue: bool
    duplicate_window: float = 120.0
    max_age: float | None = None


def stream_specs(settings: KodaSettings) -> list[StreamSpec]:
    """The streams of the bus contract."""
    return [
        # Cron fires are de-duplicated by message id; an hour covers any scheduler restart race.
        StreamSpec("RUNS", ["koda.runs.>"], work_queue=True, duplicate_window=3600.0),
        StreamSpec("ACTIONS", ["koda.actions.>"], work_queue=True, duplicate_window=3600.0),
        StreamSpec("SCRAPE", ["koda.scrape.>"], work_queue=True),
        StreamSpec(
            "EVENTS", ["koda.events.>"], work_queue=False,
            max_age=settings.events_max_age_days * 86400.0,
        ),
        # Agent session transcripts, `koda.sessions.<session id>`: any worker resumes any session.
        StreamSpec("SESSIONS", ["koda.sessions.>"], work_queue=False,
                   max_age=SESSION_RETENTION_DAYS * 86400.0),
    ]


def bucket_specs(settings: KodaSettings) -> list[KeyValueConfig]:
    """The KV buckets of the bus contract."""
    replicas = settings.nats_replicas
    return [
        KeyValueConfig(bucket="approvals", history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket="health", ttl=settings.heartbeat_ttl, storage=StorageType.FILE,
                       replicas=replicas),
        KeyValueConfig(bucket="scheduler", history=1, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket="runs", history=5, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket="limits", history=5, storage=StorageType.FILE, replicas=replicas),
        # Action results by idempotency key (a repeat returns the record); scraper site state.
        KeyValueConfig(bucket="actions", history=1, storage=StorageType.FILE, replicas=replicas,
                       ttl=max(90, settings.events_max_age_days) * 86400.0),
        KeyValueConfig(bucket="scraper", history=1, storage=StorageType.FILE, replicas=replicas),
        KeyValueConfig(bucket="config", history=1, storage=StorageType.FILE, replicas=replicas),
    ]


@dataclass
class Bus:
    """A connected NATS client with JetStream, the KV buckets, and typed helpers."""

    nc: NATS
    js: JetStreamContext
    settings: KodaSettings
    service: str
    kv: dict[str, KeyValue] = field(default_factory=dict)
    #: Errors the server sent on this connection (a permissions violation arrives this way,
    #: while the refused publish itself only times out).
    errors: list[Exception] = field(default_factory=list)
    #: Called (without arguments, on the event loop) each time the connection comes back.
    reconnect_listeners: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    async def connect(
        cls, settings: KodaSettings, service: str, *, timeout: float = 30.0, ensure: bool = True
    ) -> Bus:
        """Connect (retrying until `timeout` so services may start before NATS), then set up."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        errors: list[Exception] = []
        listeners: list[Callable[[], None]] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)
            del errors[:-20]  # the latest few are enough to explain a failure
            await _log_error(exc)

        async def on_reconnect() -> None:
            log.info("reconnected to nats")
            for listener in list(listeners):
                try:
                    listener()
                except Exception:
                    log.exception("reconnect listener failed")

        while time.monotonic() < deadline:
            try:
                # nats-py retries a first connection forever when reconnects are unlimited:
                # bound each attempt so a dead server gives our clear error, not a hang.
                nc = await asyncio.wait_for(nats.connect(
                    # One URL, or a cluster's several (the client moves to another on a loss).
                    [url.strip() for url in settings.nats_url.split(",") if url.strip()],
                    name=f"koda-{service}",
                    user=settings.nats_user,
                    password=settings.nats_password.get_secret_value()
                    if settings.nats_password else None,
                    max_reconnect_attempts=-1,
                    # A NATS restart takes ~0.3 s: try again soon after it is back.
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=on_error,
                    disconnected_cb=_log_disconnect,
                    reconnected_cb=on_reconnect,
                ), timeout=max(0.5, min(5.0, deadline - time.monotonic())))
                break
            except Exception as exc:
                last_error = exc
                await asyncio.sleep(0.2)
        else:
            raise BusError(f"cannot reach NATS at {settings.nats_url}: {last_error}")
        bus = cls(nc=nc, js=nc.jetstream(), settings=settings, service=service, errors=errors,
                  reconnect_listeners=listeners)
        if ensure:
            try:
                await bus.ensure()
            except BaseException:
                await nc.close()  # refused (another home's NATS): leave nothing open
                raise
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
                num_replicas=self.settings.nats_replicas,
                # The scheduler stores a second's fires as one atomic batch (one disk sync).
                allow_atomic=True if spec.name == "RUNS" else None,
                metadata={HOME_KEY: home_id(self.settings), "koda_home": str(
                    self.settings.expanded_home())},
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
                info = await self.js.stream_info(config.name)
                self._check_home(info.config.metadata or {})
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

    def _check_home(self, metadata: dict[str, str]) -> None:
        """Refuse a NATS whose streams a stack with another home created: two stacks on one
        NATS would consume each other's runs. Streams made before the stamp existed pass."""
        theirs = metadata.get(HOME_KEY)
        if theirs is not None and theirs != home_id(self.settings):
            raise ForeignStack(
                f"the NATS at {self.settings.nats_url} belongs to the Koda stack of another home "
                f"({metadata.get('koda_home', '?')}), not {self.settings.expanded_home()}: give "
                "each stack its own NATS (KODA_NATS_PORT / KODA_NATS_URL)")

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` each time the connection comes back (after a NATS restart or a
        network drop); returns the function that stops it."""
        self.reconnect_listeners.append(listener)
        return lambda: self.reconnect_listeners.remove(listener) \
            if listener in self.reconnect_listeners else None

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

    async def request(self, subject: str, message: R, reply: type[Q], *, timeout: float,
                      msg_id: str | None = None,
                      keep_alive: Callable[[], Awaitable[None]] | None = None) -> Q:
        """Publish `message` durably with a reply inbox (its `reply_subject`) and wait for the
        service's one answer, as `reply`. No answer within `timeout` raises `NoReply`, which
        names the service and the wait; `keep_alive` runs every 10 s meanwhile (a long job's
        progress ack)."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        deadline = time.monotonic() + timeout
        try:
            await self.publish(subject, message.model_copy(update={"reply_subject": inbox}),
                               msg_id=msg_id)
            while (left := deadline - time.monotonic()) > 0:
                try:  # nats-py's timeout is a TimeoutError too
                    msg = await sub.next_msg(timeout=min(left, 10.0) if keep_alive else left)
                except TimeoutError:
                    if keep_alive is not None and deadline > time.monotonic():
                        await keep_alive()
                    continue
                return reply.model_validate_json(msg.data)
            queue = subject.split(".")[1] if subject.count(".") >= 2 else subject
            raise NoReply(f"no answer from {ANSWERERS.get(queue, subject)} in {timeout:.0f}s")
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def event(self, event: str, summary: str = "", *,
              data: EventData | dict[str, Any] | None = None, **fields: Any) -> Event:
        """An event from this service; `data` is the kind's model (shared/events.py). A plain
        dict is for what no model describes: a test standing in for another version's producer."""
        payload = data.dump() if isinstance(data, EventData) else data or {}
        return Event(event=event, service=self.service, summary=summary, data=payload, **fields)

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
        durable: str | None = None,
    ) -> None:
        """Pull from a durable consumer until `stop` is set (see consumer.py): a work queue's
        shared one, or on EVENTS the reader's own `durable` (new events only at creation).

        At most `concurrency` handlers run at once; their tasks are added to `in_flight` so the
        service can wait for them on shutdown.
        """
        consumer = DurableConsumer(
            self, stream, model, handler, filter_subject=filter_subject, concurrency=concurrency,
            ack_wait=ack_wait, max_deliver=max_deliver or self.settings.max_deliver,
            durable=durable)
        tasks = in_flight if in_flight is not None else set()
        # A NATS restart can fail the subscribe or a fetch with errors the loop does not expect
        # (a JetStream API timeout while the server recovers): start the consumer again, with a
        # backoff, rather than leave a live service that takes no work.
        await keep_running(f"{stream} consumer", lambda: consumer.run(stop, tasks), stop,
                           Backoff(first=0.5, cap=10.0))


def permission_violation(bus: Bus) -> str | None:
    """The server's latest permissions-violation message on this connection, if any."""
    for exc in reversed(bus.errors):
        if "permissions violation" in str(exc).lower():
            return str(exc).strip().strip("'")
    return None


async def _log_error(exc: Exception) -> None:
    log.warning("nats error: %s", exc)


async def _log_disconnect() -> None:
    log.warning("disconnected from nats")


