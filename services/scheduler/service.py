"""Scheduler: turns tasks.json into run requests on RUNS, each fire an explicit, durable decision.

- One leader (the `leader` lock in the `scheduler` KV) fires; a standby takes over when the
  leader stops renewing, and catches up what fell in between by each task's policy.
- Fires come from a heap of due times: the loop sleeps until the next one (idle costs nothing).
- Each fire is published with message id `<task>:<scheduled epoch ms>`, so a repeat is dropped
  by JetStream, and recorded at `fire.<task>` so a restart knows what it missed.
- tasks.json is reloaded when its mtime changes; a broken file keeps the last good schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from koda.shared.errors import ConfigError
from koda.shared.events import ConfigDetail, ConfigInvalid
from koda.shared.home import HomeLayout
from koda.shared.kvwatch import KeyWatch
from koda.shared.messages import SchedulerFire
from koda.shared.service import Service
from koda.shared.settings import KodaSettings
from koda.shared.supervised import keep_running
from koda.shared.tasks import Task, TasksFile

from .catchup import CatchUpPlan, plan_catch_up
from .clock import Clock, SystemClock
from .failures import FailureCounter
from .firing import Firer, fire_ids
from .leader import LeaderLock
from .metrics import SchedulerMetrics
from .records import FireRecords
from .reload import TasksFileWatch
from .schedule import DueHeap, ScheduledTask, scheduled_tasks
from .watches import ActiveRuns, PausedTasks

log = logging.getLogger(__name__)
#: A fire more than this late means the loop was stalled (a laptop asleep): it is treated as
#: missed and the task's catch-up policy decides, instead of firing a backlog as if on time.
LATE_GRACE = timedelta(seconds=60)
_TICK = timedelta(microseconds=1)
TICK_EVERY = timedelta(seconds=30)


class SchedulerService(Service):
    name = "scheduler"

    def __init__(self, settings: KodaSettings, clock: Clock | None = None) -> None:
        super().__init__(settings)
        self.clock: Clock = clock or SystemClock()
        self.heap = DueHeap()
        self.tasks_file: TasksFile | None = None
        self.wake = asyncio.Event()
        self._catch_up_pending = True
        #: Set once this instance leads and has applied catch-up (benchmarks and tests wait on it).
        self.leading = asyncio.Event()

    # --- setup ------------------------------------------------------------------------------

    async def setup(self) -> None:
        self.metrics = SchedulerMetrics(self.registry)
        self.watch = TasksFileWatch(HomeLayout(self.settings.expanded_home()).tasks,
                                    self.settings.expanded_state(), self.bus.kv["config"])
        await self._reload()
        self.paused, self.active = PausedTasks(), ActiveRuns()
        for bucket, pattern, view in (("scheduler", "pause.*", self.paused),
                                      ("runs", ">", self.active)):
            key_watch = KeyWatch(self.bus, bucket, pattern, view.apply)
            await key_watch.start()
            self.stack.push_async_callback(key_watch.stop)
        self.records = FireRecords(self.bus.kv["scheduler"])
        self.firer = Firer(self.bus, self.metrics, self.clock, self.paused, self.active, self.records)
        self.lock = LeaderLock(self.bus.kv["scheduler"], self.instance, self.settings.scheduler_leader_ttl)
        self.failures = FailureCounter(self.bus, self.task)
        await self.lock.try_acquire()

    def task(self, task_id: str) -> Task | None:
        return self.tasks_file.get(task_id) if self.tasks_file else None

    def health_detail(self) -> dict[str, Any]:
        nxt = self.heap.next_due()
        return {"leader": getattr(self, "lock", None) is not None and self.lock.held,
                "tasks_scheduled": len(self.heap), "next_due": nxt.isoformat() if nxt else None}

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        helpers = [asyncio.create_task(keep_running(name, factory, self.stopping), name=name)
                   for name, factory in (
            ("leader", self._leader_loop), ("reload", self._reload_loop),
            ("failures", lambda: self.failures.run(self.stopping)), ("stop", self._wake_on_stop),
            ("records", self.records.run))]
        try:
            while not self.stopping.is_set():
                self.wake.clear()
                self.metrics.last_tick.set(self.clock.now().timestamp())
                self.metrics.leader.set(1 if self.lock.held else 0)
                # Wake at least every TICK_EVERY so the tick gauge shows a live loop (the
                # watchdog's probe), even with nothing due for days.
                alive_by = self.clock.now() + TICK_EVERY
                if not self.lock.held:
                    self._catch_up_pending = True
                    self.leading.clear()
                    await self.clock.sleep_until(alive_by, self.wake)
                    continue
                if self._catch_up_pending:
                    self._catch_up_pending = False
                    await self._start_leading()
                await self._fire_due()
                due = self.heap.next_due()
                await self.clock.sleep_until(alive_by if due is None else min(due, alive_by), self.wake)
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.records.flush()  # a clean stop leaves exact records for the next leader
            await self.lock.release()

    async def _fire_due(self) -> None:
        now = self.clock.now()
        on_time, late = self.heap.pop_due(now, now - LATE_GRACE)
        jobs: list[Awaitable[Any]] = [
            asyncio.create_task(self.firer.fire(sched, scheduled, scheduled + sched.jitter(scheduled)))
            for sched, scheduled in on_time]
        await asyncio.sleep(0)  # every publish goes out before the bookkeeping below
        self.heap.reschedule(on_time)
        for sched, first_late in late.values():
            plan = plan_catch_up(sched, first_late - _TICK, now - LATE_GRACE - _TICK)
            if plan is not None:
                jobs.append(self._apply_plan(sched, plan))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("fire failed", exc_info=result)

    async def _wake_on_stop(self) -> None:
        await self.stopping.wait()
        self.wake.set()

    async def _leader_loop(self) -> None:
        interval = self.settings.scheduler_leader_ttl / 3
        while True:
            await asyncio.sleep(interval)
            was = self.lock.held
            if was != await self.lock.try_acquire():
                self.wake.set()

    # --- catching up ------------------------------------------------------------------------

    async def _start_leading(self) -> None:
        """Become the firing instance: apply catch-up from each task's last recorded fire."""
        now = self.clock.now()
        records = await self._fire_records()
        # A crashed leader fired everything due while it still renewed its claim; its fire
        # records may lag behind that, so fires up to its last renewal are not "missed".
        alive = self.lock.predecessor_alive_until
        self.lock.predecessor_alive_until = None
        floor = datetime.fromtimestamp(alive, UTC) if alive else None
        jobs = []
        for sched in self.heap.tasks.values():
            record = records.get(sched.id)
            if record is None:
                self.firer.record(sched.id, now, "", "baseline")
                continue
            since = max(record.last_fire, floor) if floor and floor < now else record.last_fire
            plan = plan_catch_up(sched, since, now)
            if plan is not None:
                jobs.append(self._apply_plan(sched, plan))
        await asyncio.gather(*jobs)
        self.heap.load(self.heap.tasks, {task_id: now for task_id in self.heap.tasks})
        self.leading.set()

    async def _apply_plan(self, sched: ScheduledTask, plan: CatchUpPlan) -> None:
        decisions = [await self.firer.fire(sched, t, t, "catch_up") for t in plan.run]
        if not plan.run or plan.run[-1] != plan.last_missed:
            self.firer.record(sched.id, plan.last_missed, fire_ids(sched.id, plan.last_missed)[0],
                              "dropped")
        # A fire JetStream already held (its message id) was not missed: the last leader fired it.
        duplicates = decisions.count("duplicate")
        plan = dataclasses.replace(plan, missed=plan.missed - duplicates, run=[
            t for t, d in zip(plan.run, decisions, strict=True) if d != "duplicate"])
        self.metrics.missed.labels(sched.id, plan.policy).inc(plan.missed)
        if plan.missed == 0:
            return  # nothing was missed after all: no event
        log.info(plan.describe())
        await self.bus.emit(self.bus.event(
            "scheduler.catch_up", plan.describe(), task=sched.id,
            data=plan.event_data(decisions, duplicates)))

    async def _fire_records(self) -> dict[str, SchedulerFire]:
        records: dict[str, SchedulerFire] = {}

        def keep(key: str, value: bytes | None) -> None:
            if value is not None:
                records[key.removeprefix("fire.")] = SchedulerFire.from_bytes(value)

        key_watch = KeyWatch(self.bus, "scheduler", "fire.*", keep)
        await key_watch.start()
        await key_watch.stop()
        return records

    # --- tasks.json -------------------------------------------------------------------------

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scheduler_reload_interval)
            if self.watch.changed():
                await self._reload()

    async def _reload(self) -> None:
        loaded = await self.watch.load()
        if isinstance(loaded, ConfigError):
            await self._report_invalid(loaded)
            return
        broken = self.watch.good.error  # set when we started on a broken file: the saved copy runs
        first = self.tasks_file is None
        old = self.heap.tasks
        self.tasks_file = loaded
        new = scheduled_tasks(loaded)
        now = self.clock.now()
        pending = self.heap.pending()
        after: dict[str, datetime] = {}
        for task_id, sched in new.items():
            before = old.get(task_id)
            unchanged = before is not None and (before.spec, before.zone) == (sched.spec, sched.zone)
            after[task_id] = pending[task_id] - _TICK if unchanged and task_id in pending else now
            if before is None and getattr(self, "lock", None) is not None and self.lock.held:
                self.firer.record(task_id, now, "", "baseline")
        self.heap.load(new, after)
        enabled = sum(1 for t in loaded.tasks if t.enabled)
        self.metrics.tasks.labels("enabled").set(enabled)
        self.metrics.tasks.labels("disabled").set(len(loaded.tasks) - enabled)
        if not first:
            log.info("tasks.json reloaded", extra={"scheduled": len(new)})
        self.wake.set()
        if broken is not None:
            await self._report_invalid(broken)

    async def _report_invalid(self, exc: ConfigError) -> None:
        problems = [str(p) for p in exc.problems]
        keeping = "keeping the last good schedule" if self.tasks_file else "no schedule loaded"
        self.metrics.reload_errors.inc()
        log.error("tasks.json is invalid; %s", keeping, extra={"problems": problems})
        await self.bus.emit(self.bus.event(
            "config.invalid", f"tasks.json: {len(problems)} problem(s); {keeping}", severity="error",
            data=ConfigInvalid(file=str(self.watch.path), problems=problems,
                               details=[ConfigDetail(file=str(p.file), line=p.line, field=p.field,
                                                     message=p.message) for p in exc.problems])))


SERVICE = SchedulerService
