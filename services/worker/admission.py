"""Admission: whether a run starts now, smaller, or later, from the budget and the window.

A pure function of its inputs (no clock, no I/O), so the worker, the tests and
`bench/quota_day.py` all drive the same decision. The policy, per task priority:

- **critical** runs, and chat runs (a person is waiting), always go on: the reserve is for them.
- **background** runs wait when starting would touch the reserve (credit or cap left, minus the
  run's expected cost, below `reserve_usd`) or when the window is busy (utilization at or above
  `admission_utilization`): until just after the window resets, or the next UTC day when the
  budget is what is short (the next month when only the month is). When the task's next
  scheduled fire comes before that, the run is **skipped** instead: the next fire is asked
  again, so held runs never pile up behind a long wait.
  Two exceptions let background runs use what would otherwise be lost: **the reserve is released
  before the budget renews** (the reserve kept is at most what the scheduled critical and normal
  runs are forecast to need until the short budget renews, plus the reserve's share of the time
  left for unscheduled chat and manual runs: a credit that expires at the month's end is not
  kept for runs that will not come), and **a busy window's last minutes** (a window that resets
  within `LAST_MINUTES` and still has room: what is left of it is lost at the reset, and a
  refusal would pause runs only until then; normal runs then go on as written too).
- **normal** runs go on in either case, but under a smaller turn cap (`admission_reduced_turns`)
  and the task's `cheaper_model` when it names one.

The hard caps stay where they were (`Limits.check` refuses at a cap); admission only decides
who gets what is left before that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Decision = Literal["run", "reduce", "wait", "skip"]
#: Seconds after a window's reset before a held run tries again (the reset is not exact).
RESET_MARGIN = 60.0
#: Seconds before a busy window's reset from which background runs use what is left of it.
LAST_MINUTES = 600.0
DAY = 86400.0


@dataclass(frozen=True)
class Budget:
    """The budget policy from settings."""

    credit_month: float | None = None
    cap_day: float | None = None
    cap_month: float | None = None
    reserve: float = 0.0
    busy_utilization: float = 0.8
    reduced_turns: int = 8


@dataclass(frozen=True)
class Usage:
    """What has been used: spend so far and the last window report."""

    spend_day: float = 0.0
    spend_month: float = 0.0
    utilization: float | None = None  # 0..1, from the last RateLimitEvent
    resets_at: float | None = None  # unix seconds


@dataclass(frozen=True)
class Admission:
    """The decision, its reason, and what changes for the run."""

    decision: Decision
    reason: str
    wait_until: float | None = None  # unix seconds, for "wait"
    max_turns: int | None = None  # for "reduce"
    model: str | None = None  # for "reduce", when the task allows a cheaper one

    def as_data(self) -> dict[str, object]:
        data: dict[str, object] = {"decision": self.decision, "reason": self.reason}
        if self.wait_until is not None:
            data["wait_until"] = datetime.fromtimestamp(self.wait_until, UTC).isoformat()
        if self.max_turns is not None:
            data["max_turns"] = self.max_turns
        if self.model is not None:
            data["model"] = self.model
        return data


def left(budget: Budget, usage: Usage) -> tuple[float | None, str]:
    """USD left before the tightest of credit and caps, and which one it is (None: no limit)."""
    room: list[tuple[float, str]] = []
    if budget.credit_month is not None:
        room.append((budget.credit_month - usage.spend_month, "credit"))
    if budget.cap_month is not None:
        room.append((budget.cap_month - usage.spend_month, "month cap"))
    if budget.cap_day is not None:
        room.append((budget.cap_day - usage.spend_day, "day cap"))
    if not room:
        return None, ""
    return min(room)


def admit(priority: str, *, interactive: bool, max_turns: int, cheaper_model: str | None,
          expected_cost: float, budget: Budget, usage: Usage, now: float,
          next_fire: float | None = None,
          scheduled_need: Callable[[float], float] | None = None) -> Admission:
    """Decide for one run about to start at `now` (unix seconds); `next_fire` is when the
    task's schedule fires next (None: not scheduled); `scheduled_need(until)` is the USD the
    scheduled critical and normal runs are forecast to cost from now until `until` (None: no
    forecast, the whole reserve is kept)."""
    if priority == "critical":
        return Admission("run", "critical task: always admitted")
    if interactive:
        return Admission("run", "chat run: a person is waiting")
    room, limit = left(budget, usage)
    reserve = budget.reserve
    short = room is not None and room - expected_cost < reserve
    if short and scheduled_need is not None:
        reserve = kept_reserve(budget.reserve, limit, now, scheduled_need)
        short = room is not None and room - expected_cost < reserve
    busy = (usage.utilization is not None and usage.utilization >= budget.busy_utilization
            and usage.resets_at is not None and usage.resets_at > now)
    last_minutes = (busy and usage.resets_at is not None and usage.resets_at - now <= LAST_MINUTES
                    and usage.utilization is not None and usage.utilization < 1.0)
    if not short and (not busy or last_minutes):
        if busy:
            return Admission("run", f"window {usage.utilization:.0%} used but resets in "
                             f"{(usage.resets_at or now) - now:.0f}s: its rest is used, not lost")
        if reserve < budget.reserve:
            return Admission("run", f"reserve released before the {limit} renews: "
                             f"${reserve:.2f} kept of ${budget.reserve:.2f}")
        return Admission("run", "budget and window have room")
    why = []
    if short:
        why.append(f"${room:.2f} left before the {limit}, reserve ${reserve:.2f}")
    if busy:
        why.append(f"window {usage.utilization:.0%} used")
    reason = "; ".join(why)
    if priority == "background":
        until = _after_budget(limit, now) if short else 0.0
        if busy and usage.resets_at is not None:
            until = max(until, usage.resets_at + RESET_MARGIN)
        if next_fire is not None and next_fire < until:
            return Admission("skip", f"background task skipped, its next fire comes first: {reason}")
        return Admission("wait", f"background task held: {reason}", wait_until=until)
    turns = min(max_turns, budget.reduced_turns)
    return Admission("reduce", f"normal task reduced to {turns} turns"
                     + (f" on {cheaper_model}" if cheaper_model else "") + f": {reason}",
                     max_turns=turns, model=cheaper_model)


def kept_reserve(reserve: float, limit: str, now: float,
                 scheduled_need: Callable[[float], float]) -> float:
    """The part of the reserve still worth keeping before `limit` renews: the scheduled critical
    and normal runs' forecast until then, plus the reserve's share of the time left (the reserve
    is sized to a day of critical and chat runs; chat and manual runs are not scheduled)."""
    renews = _after_budget(limit, now)
    unscheduled = reserve * min(1.0, max(0.0, renews - now) / DAY)
    return min(reserve, scheduled_need(renews) + unscheduled)


def _after_budget(limit: str, now: float) -> float:
    """When the budget that ran short renews: the next UTC day, or month for a month limit."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if limit == "day cap":
        return (day + timedelta(days=1)).timestamp()
    first = day.replace(day=1)
    return (first.replace(year=first.year + 1, month=1) if first.month == 12
            else first.replace(month=first.month + 1)).timestamp()
