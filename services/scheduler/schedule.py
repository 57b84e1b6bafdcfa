"""The due-time heap: which task fires next, and when.

One entry per enabled cron task, keyed by the instant it is due (the scheduled instant plus its
jitter). Replacing the task set bumps a generation so stale entries are dropped lazily instead
of rebuilding the heap under the loop's feet.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from koda.shared import cron
from koda.shared.tasks import Task, TasksFile


def epoch_ms(instant: datetime) -> int:
    return round(instant.timestamp() * 1000)


@dataclass(frozen=True)
class ScheduledTask:
    """An enabled cron task with its parsed expression and zone."""

    task: Task
    spec: cron.CronSpec
    zone: ZoneInfo

    @property
    def id(self) -> str:
        return self.task.id

    def next_after(self, instant: datetime) -> datetime | None:
        return cron.next_fire(self.spec, instant, self.zone)

    def fires_between(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        """The last `keep` fire instants in (start, end], and how many fell there in all.

        A dense schedule over a long gap (every second for a week) is not walked fire by fire:
        after `_WALK_LIMIT` fires the count is extrapolated and the walk resumes near the end.
        """
        out: list[datetime] = []
        total = 0
        t = start
        while True:
            nxt = self.next_after(t)
            if nxt is None or nxt > end:
                return out, total
            total += 1
            out.append(nxt)
            if len(out) > keep:
                out.pop(0)
            t = nxt
            if total == _WALK_LIMIT:
                interval = (t - start) / total
                resume = end - interval * (keep + 2)
                if resume > t:
                    total += int((resume - t) / interval)
                    t = resume

    def jitter(self, scheduled: datetime) -> timedelta:
        """A delay in [0, jitter_seconds], the same for a given fire in every scheduler."""
        if not self.task.jitter_seconds:
            return timedelta(0)
        rng = random.Random(f"{self.id}:{epoch_ms(scheduled)}")
        return timedelta(seconds=rng.uniform(0, self.task.jitter_seconds))


def scheduled_tasks(tasks: TasksFile) -> dict[str, ScheduledTask]:
    """The enabled tasks that have a cron expression (manual-only tasks never fire by time)."""
    out: dict[str, ScheduledTask] = {}
    for task in tasks.tasks:
        spec = task.cron_spec()
        if task.enabled and spec is not None:
            out[task.id] = ScheduledTask(task, spec, task.zone(tasks.timezone))
    return out


@dataclass(order=True)
class _Entry:
    due: datetime
    seq: int
    scheduled: datetime = field(compare=False)
    task_id: str = field(compare=False)
    generation: int = field(compare=False)


@dataclass
class DueHeap:
    """Next fire of every scheduled task, ordered by due time."""

    _heap: list[_Entry] = field(default_factory=list)
    _seq: int = 0
    generation: int = 0
    tasks: dict[str, ScheduledTask] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def load(self, tasks: dict[str, ScheduledTask], after: dict[str, datetime]) -> None:
        """Replace the task set; each task's next fire comes after `after[id]`."""
        self.generation += 1
        self.tasks = dict(tasks)
        self._heap = []
        for sched in tasks.values():
            self.push_after(sched, after[sched.id])

    def push_after(self, sched: ScheduledTask, instant: datetime) -> None:
        nxt = sched.next_after(instant)
        if nxt is not None:
            self._seq += 1
            heapq.heappush(self._heap, _Entry(nxt + sched.jitter(nxt), self._seq, nxt, sched.id,
                                              self.generation))

    def reschedule(self, fired: list[tuple[ScheduledTask, datetime]]) -> None:
        """Push the fire after each one `pop_due` returned on time."""
        for sched, scheduled in fired:
            if self.tasks.get(sched.id) is sched:  # not removed by a reload meanwhile
                self.push_after(sched, scheduled)

    def pending(self) -> dict[str, datetime]:
        """The scheduled instant of each task's next fire."""
        return {e.task_id: e.scheduled for e in self._heap if e.generation == self.generation}

    def _drop_stale(self) -> None:
        while self._heap and self._heap[0].generation != self.generation:
            heapq.heappop(self._heap)

    def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._heap[0].due if self._heap else None

    def pop_due(
        self, now: datetime, late_before: datetime
    ) -> tuple[list[tuple[ScheduledTask, datetime]], dict[str, tuple[ScheduledTask, datetime]]]:
        """Remove what is due at or before `now`: the fires on time, in order, and per task the
        first fire scheduled before `late_before` (the loop was stalled: a laptop asleep).

        A late task is moved past `late_before` in one step, so a long stall costs no more than
        a short one; the caller applies the task's catch-up policy to what it missed.
        """
        on_time: list[tuple[ScheduledTask, datetime]] = []
        late: dict[str, tuple[ScheduledTask, datetime]] = {}
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0].due > now:
                return on_time, late
            entry = heapq.heappop(self._heap)
            sched = self.tasks[entry.task_id]
            if entry.scheduled < late_before:
                late.setdefault(sched.id, (sched, entry.scheduled))
                self.push_after(sched, late_before - _TICK)
            else:
                # The next fire is pushed by `reschedule`, after these are on their way.
                on_time.append((sched, entry.scheduled))


_TICK = timedelta(microseconds=1)
_WALK_LIMIT = 10_000
