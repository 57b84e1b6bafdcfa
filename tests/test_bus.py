"""The bus against a real nats-server: idempotent setup, typed messages, retries, failed events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from koda.shared.bus import Bus, Delivery
from koda.shared.errors import Permanent, RetryLater
from koda.shared.messages import Event, RunRequest
from koda.shared.settings import KodaSettings
from tests.waits import queue_drained


def run_request(task: str = "demo", n: int = 0) -> RunRequest:
    return RunRequest(task=task, run_id=f"{task}-{n}", scheduled_for=datetime.now(UTC))


async def collect_events(bus: Bus, kind: str, into: list[Event]) -> object:
    async def on_event(msg: object) -> None:
        into.append(Event.from_bytes(msg.data))  # type: ignore[attr-defined]

    return await bus.nc.subscribe(f"koda.events.{kind}", cb=on_event)


async def consume_until(bus: Bus, handler, done: asyncio.Event, **kw: object) -> None:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume("RUNS", RunRequest, handler, stop=stop, **kw))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(done.wait(), timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_setup_is_idempotent_and_creates_the_contract(settings: KodaSettings) -> None:
    first = await Bus.connect(settings, "a")
    second = await Bus.connect(settings, "b")  # a second service starting against the same bus
    try:
        names = {s.config.name for s in await first.js.streams_info()}
        assert {"RUNS", "ACTIONS", "SCRAPE", "EVENTS"} <= names
        assert {"KV_approvals", "KV_health", "KV_scheduler", "KV_runs", "KV_limits"} <= names
        info = await first.js.stream_info("RUNS")
        assert str(getattr(info.config.retention, "value", info.config.retention)) == "workqueue"
        assert set(second.kv) == {"approvals", "health", "scheduler", "runs", "limits", "actions",
                                  "scraper", "config"}
    finally:
        await first.close()
        await second.close()


async def test_cron_message_id_drops_a_double_fire(bus: Bus) -> None:
    req = run_request()
    await bus.publish("koda.runs.demo", req, msg_id="demo:1700000000000")
    await bus.publish("koda.runs.demo", req, msg_id="demo:1700000000000")
    info = await bus.js.stream_info("RUNS")
    assert info.state.messages == 1


async def test_typed_delivery_and_ack(bus: Bus) -> None:
    got: list[RunRequest] = []
    done = asyncio.Event()

    async def handler(d: Delivery[RunRequest]) -> None:
        got.append(d.message)
        done.set()

    await bus.publish("koda.runs.demo", run_request(n=7))
    await consume_until(bus, handler, done)
    assert got[0].run_id == "demo-7" and isinstance(got[0].scheduled_for, datetime)
    await queue_drained(bus, "RUNS")  # acked off the work queue


async def test_retry_later_is_a_delayed_redelivery(bus: Bus) -> None:
    seen: list[tuple[int, float]] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def handler(d: Delivery[RunRequest]) -> RetryLater | None:
        seen.append((d.attempt, loop.time()))
        if d.attempt == 1:
            return RetryLater(0.8, "rate limited")
        done.set()
        return None

    await bus.publish("koda.runs.demo", run_request())
    await consume_until(bus, handler, done)
    assert [a for a, _ in seen] == [1, 2]
    assert seen[1][1] - seen[0][1] >= 0.7


async def test_permanent_becomes_a_failed_event_without_retries(bus: Bus) -> None:
    events: list[Event] = []
    await collect_events(bus, "message.failed", events)
    calls = 0
    done = asyncio.Event()

    async def handler(d: Delivery[RunRequest]) -> Permanent:
        nonlocal calls
        calls += 1
        done.set()
        return Permanent("task no longer exists")

    await bus.publish("koda.runs.gone", run_request("gone"))
    await consume_until(bus, handler, done)
    await _wait(lambda: events)
    assert calls == 1
    assert events[0].task == "gone" and "task no longer exists" in events[0].summary


async def test_a_crashing_handler_past_max_deliveries_is_a_failed_event(bus: Bus) -> None:
    events: list[Event] = []
    await collect_events(bus, "message.failed", events)
    attempts: list[int] = []
    done = asyncio.Event()

    async def handler(d: Delivery[RunRequest]) -> None:
        attempts.append(d.attempt)
        if d.last_attempt:
            done.set()
        raise RuntimeError("boom")

    await bus.publish("koda.runs.crashy", run_request("crashy"))
    # retry_delay doubles from 1 s: deliveries at 0, 1, 3 s with max_deliver 3.
    await consume_until(bus, handler, done)
    await _wait(lambda: events)
    assert attempts == [1, 2, 3]
    assert events[0].data["deliveries"] == 3 and "boom" in events[0].data["error"]
    assert (await bus.js.stream_info("RUNS")).state.messages == 0


async def test_a_handler_that_never_answers_still_ends_as_a_failed_event(bus: Bus) -> None:
    """A worker that hangs or dies on every delivery: JetStream's advisory becomes the event."""
    events: list[Event] = []
    await collect_events(bus, "message.failed", events)
    attempts: list[int] = []

    async def handler(d: Delivery[RunRequest]) -> None:
        attempts.append(d.attempt)
        await asyncio.sleep(3600)

    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume(
        "RUNS", RunRequest, handler, stop=stop, ack_wait=0.5, max_deliver=2, concurrency=4))
    try:
        await bus.publish("koda.runs.hung", run_request("hung"))
        await _wait(lambda: events, timeout=15)
    finally:
        stop.set()
        for t in asyncio.all_tasks():
            if t.get_coro().__name__ == "_handle":  # type: ignore[union-attr]
                t.cancel()
        await asyncio.wait_for(task, timeout=5)
    assert attempts == [1, 2]
    assert events[0].task == "hung" and events[0].data["deliveries"] == 2


async def test_malformed_message_names_the_field(bus: Bus) -> None:
    events: list[Event] = []
    await collect_events(bus, "message.failed", events)

    async def handler(d: Delivery[RunRequest]) -> None:
        raise AssertionError("never called for a malformed message")

    await bus.js.publish("koda.runs.bad", b'{"task": "bad", "run_id": "x"}')
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume("RUNS", RunRequest, handler, stop=stop))
    await _wait(lambda: events)
    stop.set()
    await task
    assert "scheduled_for" in events[0].summary and "malformed RunRequest" in events[0].summary


async def test_publish_refuses_a_message_over_one_mebibyte(bus: Bus) -> None:
    big = run_request()
    big.context["transcript"] = "x" * (1024 * 1024)
    with pytest.raises(Permanent, match="keep files in files"):
        await bus.publish("koda.runs.demo", big)


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)
