"""What to do with fires that fell while no scheduler was running: each task's catch-up policy.

The decision is pure (no I/O) so it is easy to test and to explain in the `scheduler.catch_up`
event: how many fires were missed, which ones run now, how many are dropped, and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from koda.shared.events import CatchUpDone

from .schedule import ScheduledTask


@dataclass(frozen=True)
class CatchUpPlan:
    """The fate of one task's missed fires."""

    task: str
    policy: str
    missed: int
    run: list[datetime]
    since: datetime
    until: datetime
    last_missed: datetime

    @property
    def dropped(self) -> int:
        return self.missed - len(self.run)

    def describe(self) -> str:
        what = {
            "none": "runs none of them (policy none)",
            "latest": "runs the latest once (policy latest)",
            "all": f"runs {len(self.run)} (policy all)",
            "window": f"runs the {len(self.run)} within the window (policy window)",
        }[self.policy]
        return f"{self.task}: {self.missed} fire(s) missed while the scheduler was down; {what}"

    def event_data(self, decisions: Sequence[str], already_fired: int) -> CatchUpDone:
        """The `scheduler.catch_up` event's data, with what each fire in `run` became."""
        return CatchUpDone(policy=self.policy, missed=self.missed, run=self.run,
                           dropped=self.dropped, since=self.since, until=self.until,
                           decisions=list(decisions), already_fired=already_fired)


def plan_catch_up(sched: ScheduledTask, last_fire: datetime, now: datetime) -> CatchUpPlan | None:
    """The plan for fires in (last_fire, now], or None when nothing was missed."""
    policy = sched.task.catch_up
    keep = 1 if policy.policy in ("none", "latest") else policy.max_runs
    missed, total = sched.fires_between(last_fire, now, keep)
    if total == 0:
        return None
    if policy.policy == "none":
        run: list[datetime] = []
    elif policy.policy == "latest":
        run = missed[-1:]
    elif policy.policy == "all":
        run = missed[-policy.max_runs:]
    else:
        window = timedelta(minutes=policy.window_minutes)
        run = [t for t in missed if now - t <= window][-policy.max_runs:]
    return CatchUpPlan(sched.id, policy.policy, total, run, last_fire, now, missed[-1])
