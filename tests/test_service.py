"""The service base in this process: a real SIGTERM drains work in hand, then exits 0."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import urllib.request
from datetime import UTC, datetime

from koda.shared.bus import Bus, Delivery
from koda.shared.jsonlog import JsonFormatter
from koda.shared.messages import RunRequest
from koda.shared.secrets import Redactor
from koda.shared.service import Service
from koda.shared.settings import KodaSettings


class SlowWorker(Service):
    """A service whose every job takes a second, so a stop lands mid-job."""

    name = "worker"

    def __init__(self, settings: KodaSettings) -> None:
        super().__init__(settings)
        self.started: list[str] = []
        self.finished: list[str] = []

    async def run(self) -> None:
        async def handle(d: Delivery[RunRequest]) -> None:
            self.started.append(d.message.run_id)
            await asyncio.sleep(1.0)
            self.finished.append(d.message.run_id)

        await self.bus.consume("RUNS", RunRequest, handle, stop=self.stopping,
                               in_flight=self.in_flight, concurrency=2)


async def test_sigterm_finishes_work_in_hand_and_exits_zero(settings: KodaSettings, bus: Bus) -> None:
    service = SlowWorker(settings)
    serving = asyncio.create_task(service.serve())
    for n in range(2):
        await bus.publish("koda.runs.slow", RunRequest(task="slow", run_id=f"r{n}",
                                                       scheduled_for=datetime.now(UTC)))
    while len(service.started) < 2:
        await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)  # the real signal, handled by the service's own handler
    code = await asyncio.wait_for(serving, timeout=10)
    assert code == 0
    assert sorted(service.finished) == ["r0", "r1"]
    await asyncio.sleep(0.3)
    assert (await bus.js.stream_info("RUNS")).state.messages == 0  # both acked, none redelivered


async def test_heartbeat_health_and_metrics(settings: KodaSettings, bus: Bus) -> None:
    service = SlowWorker(settings)
    serving = asyncio.create_task(service.serve(install_signals=False))
    try:
        for _ in range(100):
            if service.heartbeat_age() is not None:
                break
            await asyncio.sleep(0.05)
        entry = await bus.kv["health"].get(f"worker.{service.instance}")
        assert json.loads(entry.value or b"{}")["service"] == "worker"
        port = settings.service_port("worker")
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        assert json.loads(body)["ok"] is True
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
        assert 'koda_heartbeats_total{service="worker"}' in metrics
    finally:
        service.stopping.set()
        assert await asyncio.wait_for(serving, timeout=10) == 0


def test_log_lines_never_carry_a_secret_value() -> None:
    formatter = JsonFormatter("worker", Redactor(["sk-ant-very-secret-123"]))
    record = logging.makeLogRecord({"msg": "calling with key %s", "args": ("sk-ant-very-secret-123",),
                                    "levelname": "INFO", "extra_field": "also sk-ant-very-secret-123"})
    record.extra_field = "also sk-ant-very-secret-123"
    line = formatter.format(record)
    assert "sk-ant-very-secret-123" not in line
    assert json.loads(line)["msg"] == "calling with key [redacted]"
