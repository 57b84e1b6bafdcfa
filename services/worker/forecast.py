"""The month's spend forecast: what is spent, plus each task's remaining fires times its recent cost.

Pure (the caller passes the clock, the tasks and the costs). Recent cost is the mean of a task's
last `RECENT` runs, read from the run records under `data/runs/` at first use and then fed by
the worker as runs finish.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from koda.shared import cron
from koda.shared.run_record import read_records
from koda.shared.tasks import TasksFile

RECENT = 5
#: Fires counted exactly before the rest of the month is extrapolated.
FIRES_COUNTED = 200
#: Run records read at start, newest first: enough for every task's recent runs.
SCAN_LIMIT = 500


@dataclass
class RecentCosts:
    """The last few costs of each task."""

    costs: dict[str, deque[float]] = field(default_factory=dict)

    def add(self, task: str, cost: float) -> None:
        self.costs.setdefault(task, deque(maxlen=RECENT)).append(cost)

    def mean(self, task: str) -> float:
        seen = self.costs.get(task)
        return sum(seen) / len(seen) if seen else 0.0

    @classmethod
    def from_records(cls, runs_dir: Path) -> RecentCosts:
        out = cls()
        for record in reversed(read_records(runs_dir, SCAN_LIMIT).values()):  # oldest first
            out.add(record.task, record.cost_usd)
        return out


@dataclass(frozen=True)
class Forecast:
    month: str
    spent: float
    total: float
    per_task: dict[str, float]  # forecast spend of the rest of the month, by task

    def costliest(self, n: int = 3) -> list[tuple[str, float]]:
        return sorted(self.per_task.items(), key=lambda kv: -kv[1])[:n]


def month_end(now: datetime) -> datetime:
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 \
        else first.replace(month=first.month + 1)


def fires_left(spec: cron.CronSpec, now: datetime, end: datetime, zone: ZoneInfo,
               cap: int = FIRES_COUNTED) -> float:
    """Fires in (now, end]: counted one by one up to `cap`, then extrapolated at that rate
    (a task firing every minute would otherwise cost seconds of cron arithmetic per run)."""
    t, n = now, 0
    while n < cap:
        nxt = cron.next_fire(spec, t, zone)
        if nxt is None or nxt > end:
            return float(n)
        t, n = nxt, n + 1
    return n * (end - now) / (t - now)


def forecast_month(tasks: TasksFile, recent: RecentCosts, spent: float, now: datetime) -> Forecast:
    """Spend so far plus, per enabled cron task, its fires left this month times its recent cost."""
    end = month_end(now) - timedelta(microseconds=1)  # the next month's first fire is not ours
    per_task: dict[str, float] = {}
    for task in tasks.tasks:
        spec = task.cron_spec()
        cost = recent.mean(task.id)
        if not task.enabled or spec is None or cost <= 0:
            continue
        fires = fires_left(spec, now, end, task.zone(tasks.timezone))
        if fires:
            per_task[task.id] = round(fires * cost, 4)
    return Forecast(f"{now:%Y-%m}", spent, round(spent + sum(per_task.values()), 4), per_task)


def scheduled_need(tasks: TasksFile, recent: RecentCosts, now: datetime, until: datetime,
                   priorities: frozenset[str] = frozenset({"critical", "normal"})) -> float:
    """USD the enabled cron tasks of `priorities` are forecast to cost in (now, until):
    what admission keeps of the reserve before a budget renews."""
    need = 0.0
    for task in tasks.tasks:
        spec = task.cron_spec()
        cost = recent.mean(task.id)
        if task.enabled and spec is not None and cost > 0 and task.priority in priorities:
            need += fires_left(spec, now, until - timedelta(microseconds=1),
                               task.zone(tasks.timezone)) * cost
    return need
