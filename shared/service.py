"""The base every Koda service stands on: setup, run, a bounded graceful stop, heartbeats.

A subclass overrides `setup` (open what it needs, pushing cleanups on `self.stack`) and `run`
(its loop, which returns when `self.stopping` is set). Work it has in hand goes in
`self.in_flight`; on SIGTERM the service stops taking work, waits up to `drain_timeout` for that
work, cancels what is left (logging it), drains NATS and exits 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from .bus import Bus
from .errors import BusError, ConfigError, ForeignStack, PortInUse
from .httpserver import HealthServer
from .jsonlog import setup_logging
from .messages import Heartbeat
from .secrets import Redactor, redactor_for_home
from .settings import KodaSettings

log = logging.getLogger(__name__)


class Service:
    """A long-running Koda service on the bus."""

    name: ClassVar[str] = "service"

    def __init__(self, settings: KodaSettings) -> None:
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.started_at = datetime.now(UTC)
        self.stopping = asyncio.Event()
        #: Set once setup() has finished: the service takes work from here on.
        self.ready = asyncio.Event()
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.stack = AsyncExitStack()
        self.registry = CollectorRegistry()
        self.redact: Redactor = redactor_for_home(settings.expanded_home())
        self._bus: Bus | None = None
        self._last_heartbeat: float = 0.0
        self._heartbeats = Counter(
            "koda_heartbeats_total", "Heartbeats written to the health KV",
            ["service"], registry=self.registry,
        )
        self._up = Gauge("koda_service_up", "1 while the service runs", ["service"],
                         registry=self.registry)
        Gauge("koda_service_start_time_seconds", "Unix time the service started", ["service"],
              registry=self.registry).labels(self.name).set(time.time())
        self._in_flight_gauge = Gauge(
            "koda_service_in_flight", "Work items in hand", ["service"], registry=self.registry
        )
        self._in_flight_gauge.labels(self.name).set_function(lambda: len(self.in_flight))

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("bus used before setup")
        return self._bus

    # --- hooks for subclasses ------------------------------------------------------------

    async def setup(self) -> None:
        """Open what the service needs; push cleanups onto `self.stack`."""

    async def run(self) -> None:
        """The service's loop; must return soon after `self.stopping` is set."""
        await self.stopping.wait()

    def health_detail(self) -> dict[str, Any]:
        """Extra fields for `/healthz` and the heartbeat."""
        return {}

    # --- lifecycle ------------------------------------------------------------------------

    def heartbeat_age(self) -> float | None:
        return time.monotonic() - self._last_heartbeat if self._last_heartbeat else None

    def _health(self) -> tuple[bool, dict[str, Any]]:
        age = self.heartbeat_age()
        connected = self._bus is not None and self._bus.nc.is_connected
        ok = connected and age is not None and age < self.settings.heartbeat_ttl
        return ok, {
            "service": self.name,
            "instance": self.instance,
            "ok": ok,
            "nats_connected": connected,
            "heartbeat_age_s": None if age is None else round(age, 3),
            "in_flight": len(self.in_flight),
            **self.health_detail(),
        }

    async def _heartbeat_loop(self) -> None:
        kv = self.bus.kv["health"]
        key = f"{self.name}.{self.instance}"
        # After a NATS restart, beat at once rather than up to an interval later: whoever
        # watches health (the watchdog, `koda status`) sees the service back without delay.
        beat_now = asyncio.Event()
        unlisten = self.bus.on_reconnect(beat_now.set)
        try:
            await self._beat_forever(kv, key, beat_now)
        finally:
            unlisten()

    async def _beat_forever(self, kv: Any, key: str, beat_now: asyncio.Event) -> None:
        while True:
            beat_now.clear()
            beat = Heartbeat(
                service=self.name,
                instance=self.instance,
                pid=os.getpid(),
                started_at=self.started_at,
                port=self.settings.service_port(self.name),
                status="stopping" if self.stopping.is_set() else "ok",
            )
            try:
                await kv.put(key, beat.to_bytes())
                self._last_heartbeat = time.monotonic()
                self._heartbeats.labels(self.name).inc()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(beat_now.wait(), self.settings.heartbeat_interval)
            except TimeoutError:
                pass

    async def serve(self, *, install_signals: bool = True) -> int:
        """Run the service until stopped; returns the process exit code."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
        async with self.stack:
            self._bus = await Bus.connect(self.settings, self.name)
            self.stack.push_async_callback(self._bus.close)
            http = HealthServer(
                self.settings.http_host, self.settings.service_port(self.name),
                self.registry, self._health,
            )
            try:
                await http.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortInUse(
                    f"port {http.port} ({self.settings.http_host}) is in use: another {self.name} "
                    "of this stack probably runs on this host already. One per host; a second "
                    "stack needs its own KODA_PORT_BASE and NATS") from exc
            self.stack.push_async_callback(http.stop)
            heartbeat = asyncio.create_task(self._heartbeat_loop())
            self.stack.push_async_callback(_cancel, heartbeat)
            await self.setup()
            self._up.labels(self.name).set(1)
            self.ready.set()
            log.info("started", extra={"instance": self.instance,
                                       "port": self.settings.service_port(self.name)})
            runner = asyncio.create_task(self.run())
            stop_wait = asyncio.create_task(self.stopping.wait())
            done, _ = await asyncio.wait({runner, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done and runner.exception() is not None:
                stop_wait.cancel()
                raise runner.exception()  # type: ignore[misc]
            self.stopping.set()
            await self._drain(runner)
            stop_wait.cancel()
            self._up.labels(self.name).set(0)
        log.info("stopped")
        return 0

    async def _drain(self, runner: asyncio.Task[None]) -> None:
        """Let work in hand finish within the bound, then cancel the rest and say what was cut."""
        deadline = time.monotonic() + self.settings.drain_timeout
        try:
            await asyncio.wait_for(asyncio.shield(runner), timeout=self.settings.drain_timeout)
        except (TimeoutError, Exception):
            runner.cancel()
        pending = set(self.in_flight)
        if pending:
            log.info("draining", extra={"in_flight": len(pending)})
            _, still = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            for task in still:
                log.warning("cut short at shutdown", extra={"task": task.get_name()})
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


#: Exit code of a service that cannot start because of its configuration (sysexits EX_CONFIG):
#: the watchdog classifies it as a config failure and does not restart it in a loop.
EXIT_CONFIG = 78


def run_service(cls: type[Service], settings: KodaSettings | None = None) -> None:
    """Entry point of `koda service NAME`: logs, runs, exits with the service's code."""
    try:
        settings = settings or KodaSettings()
    except ValidationError as exc:
        setup_logging(cls.name)
        for err in exc.errors():
            field = "KODA_" + ".".join(str(p) for p in err["loc"]).upper()
            logging.getLogger(cls.name).error(f"config error: {field}: {err['msg']}")
        sys.exit(EXIT_CONFIG)
    setup_logging(cls.name, settings.log_level, redactor_for_home(settings.expanded_home()))
    try:
        code = asyncio.run(cls(settings).serve())
    except ConfigError as exc:
        for problem in exc.problems:
            logging.getLogger(cls.name).error(f"config error: {problem}")
        code = EXIT_CONFIG
    except (PortInUse, BusError) as exc:  # a clear line, not a traceback
        logging.getLogger(cls.name).error(f"cannot start: {exc}")
        code = EXIT_CONFIG if isinstance(exc, (PortInUse, ForeignStack)) else 1
    except Exception:  # a crash must leave one clear line in the error log
        logging.getLogger(cls.name).exception("service crashed")
        code = 1
    sys.exit(code)
