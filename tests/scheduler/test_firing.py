"""The scheduler fires for real against NATS: ids, records, metrics; and `skip` overlap."""

from __future__ import annotations

from datetime import timedelta

from koda.shared.bus import Bus
from koda.shared.messages import RunLedgerEntry, RunRequest, SchedulerFire
from koda.shared.settings import KodaSettings
from tests.scheduler.fake_clock import FakeClock

from .helpers import (
    at,
    events,
    metric,
    run_requests,
    start_scheduler,
    stream_messages,
    task,
    wait_for,
    write_tasks,
)


async def test_fires_every_second_for_real_with_contract_ids(settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task("tick", "* * * * * *", overlap="allow"), task("never", "0 0 1 1 *")])
    running = await start_scheduler(settings)
    try:
        await wait_for(lambda: metric(running, "koda_scheduler_fires_total",
                                      task="tick", trigger="cron") >= 2, 5)
    finally:
        await running.stop()
    stored = await stream_messages(bus, "RUNS")
    assert len(stored) >= 2 and all(subject == "koda.runs.tick" for subject, _, _ in stored)
    for _, data, headers in stored:
        request = RunRequest.from_bytes(data)
        ms = round(request.scheduled_for.timestamp() * 1000)
        assert ms % 1000 == 0  # a whole second, as the cron says
        assert request.run_id == f"tick.{ms}" and request.trigger == "cron"
        assert headers["Nats-Msg-Id"] == f"tick:{ms}"
    record = SchedulerFire.from_bytes((await bus.kv["scheduler"].get("fire.tick")).value)
    assert record.decision == "fired" and record.run_id == RunRequest.from_bytes(stored[-1][1]).run_id
    hist = running.service.registry.get_sample_value("koda_scheduler_fire_lateness_seconds_count")
    assert hist is not None and hist >= 2
    # Healthy lateness is milliseconds; a generous bound keeps this test steady on a busy machine.
    assert running.service.registry.get_sample_value(
        "koda_scheduler_fire_lateness_seconds_bucket", {"le": "0.5"}) == hist


async def test_overlap_skip_records_a_skip_and_queues_nothing(settings: KodaSettings, bus: Bus) -> None:
    clock = FakeClock(at("2026-03-02T08:59:30+00:00"))
    write_tasks(settings, [task("report", "0 * * * *", overlap="skip"),
                           task("queued", "0 * * * *", overlap="skip")])
    # A run of `report` still going, as the worker records it in the ledger.
    entry = RunLedgerEntry(run_id="report.1772438400000", task="report", status="running")
    await bus.kv["runs"].put(entry.run_id, entry.to_bytes())
    # A request for `queued` still waiting in RUNS (no worker took it yet).
    waiting = RunRequest(task="queued", run_id="queued.m1", scheduled_for=clock.now(), trigger="manual")
    await bus.publish("koda.runs.queued", waiting, msg_id=waiting.run_id)
    running = await start_scheduler(settings, clock)
    try:
        await clock.advance(timedelta(seconds=30))  # 09:00:00, both due
        assert await run_requests(bus, "report") == []
        assert [r.run_id for r in await run_requests(bus, "queued")] == ["queued.m1"]
        skipped = await events(bus, "run.skipped")
        assert {e.task for e in skipped} == {"report", "queued"}
        assert all(e.data["reason"] == "overlap" for e in skipped)
        await running.service.records.flush()
        record = SchedulerFire.from_bytes((await bus.kv["scheduler"].get("fire.report")).value)
        assert record.decision == "skipped" and record.last_fire == at("2026-03-02T09:00:00+00:00")
        assert metric(running, "koda_scheduler_skipped_total", task="report", reason="overlap") == 1
        # The run ends; the next hour fires normally.
        done = entry.model_copy(update={"status": "done"})
        await bus.kv["runs"].put(entry.run_id, done.to_bytes())
        await wait_for(lambda: running.service.active.running("report") == 0)
        await clock.advance(timedelta(hours=1))
        assert [r.run_id for r in await run_requests(bus, "report")] == ["report.1772445600000"]
    finally:
        await running.stop()


async def test_overlap_queue_one_lets_one_request_wait_behind_a_running_run(
        settings: KodaSettings, bus: Bus) -> None:
    clock = FakeClock(at("2026-03-02T08:59:30+00:00"))
    write_tasks(settings, [task("digest", "0 * * * *", overlap="queue_one")])
    running_entry = RunLedgerEntry(run_id="digest.1", task="digest", status="running")
    await bus.kv["runs"].put(running_entry.run_id, running_entry.to_bytes())
    # The running run's own request is still in the work queue until the worker acks it.
    first = RunRequest(task="digest", run_id="digest.1", scheduled_for=clock.now())
    await bus.publish("koda.runs.digest", first, msg_id="digest.1")
    running = await start_scheduler(settings, clock)
    try:
        await clock.advance(timedelta(seconds=30))  # 09:00: one may wait behind the running one
        assert [r.run_id for r in await run_requests(bus, "digest")] == ["digest.1", "digest.1772442000000"]
        await clock.advance(timedelta(hours=1))  # 10:00: one is already waiting, so skip
        assert len(await run_requests(bus, "digest")) == 2
        assert metric(running, "koda_scheduler_skipped_total", task="digest", reason="overlap") == 1
    finally:
        await running.stop()
