"""A simulated day on a Claude subscription with a 2-hour window at 10:00 and a credit close to
its cap, run three ways: the seed's policy, today's Koda, and Koda with admission.

Run: `python -m bench.quota_day` (about 20 seconds). The day is simulated, not waited for: a
simulated clock drives Koda's own admission (`services/worker/admission.py`), its shared limits
(`services/worker/limits.py`, on a real NATS KV: pause, spend caps, the kept window report) and
the recent-cost table of the forecast; everything else is a model, stated here:

- **Schedule**: the starter tasks.json's tasks due on a Tuesday (the blog post at 07:00 in three
  steps, the social post at 09:00; both normal) plus load: `inbox-triage` (critical, every 30
  min), `alerts-check` (critical, hourly), owner chat every 50 min from 08:00 to 22:00 (trigger
  chat), `news-digest` (normal, hourly, allows a cheaper model), `research-crawl` (background,
  every 15 min) and `consolidate` (background, every 2 h). Fires come from Koda's cron code.
- **The API**: each model request takes 30 s and costs $0.01 ($0.003 on the cheaper model).
  The 5-hour windows reset at 02:00, 07:00, 12:00, 17:00 and 22:00. Other use of the same
  subscription (the operator's own) fills the 07:00 window from 20% to 100% by 10:00, so every
  request is refused from 10:00 until the 12:00 reset; each of our requests adds 0.1%.
  The credit is $100 with $95 spent this month; a request past the credit is refused.
- **Worker**: two runs at a time; a run is its requests one after another; spend is added to the
  limits record when the run ends (as the worker does).
- **Seed**: every task equal, no caps; a refused request fails the run, which is retried every
  5 minutes, at most 3 times.
- **Today's Koda**: month cap = the credit; a refused request pauses every run until the reset
  the window reported (plus up to 30 s of jitter) and re-queues the run; a run is refused at a cap.
- **Admission**: today's Koda plus `admit()` before each run with a $3.50 reserve (a day of this
  schedule's critical and chat runs costs $2.91), held-back threshold 80% utilization and a
  reduced cap of 8 turns; the reserve is released before the credit renews as far as the
  forecast of the scheduled critical and normal runs allows (`scheduled_need`).
  **admission-fixed** is the same without the forecast: the whole reserve is always kept.
- **The budget bound**: the most weight any policy could complete within the credit (every run
  at its cheapest, best weight per dollar first, time ignored). It is what says whether a
  target is reachable at all on this day.
- **The month's last day**: the same day's model on 2026-12-31 (a Thursday: no blog post), when
  the credit renews at midnight, for admission with and without the forecast.

Reported per policy: priority-weighted runs completed (critical and chat 3, normal 2,
background 1), critical runs missed (never completed that day), model requests sent into the
refused window (total, and the most for one run), requests refused in all, spend, and the month's
spend against the cap. Targets: at least 2x the seed's weighted completions, 0 critical missed,
at most one request per run inside the window, spend never above a cap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._worker_common import bench_env, save
from koda.services.worker.admission import Budget, Usage, admit
from koda.services.worker.forecast import RecentCosts, scheduled_need
from koda.services.worker.limits import Limits
from koda.shared import cron
from koda.shared.settings import KodaSettings
from koda.shared.tasks import TasksFile

DAY = datetime(2026, 12, 29, tzinfo=UTC)  # a Tuesday, late in the month
END = DAY + timedelta(days=1)
REQUEST = timedelta(seconds=30)
PRICE = {"sonnet": 0.01, "haiku": 0.003}
CREDIT, SPENT_BEFORE, RESERVE = 100.0, 95.0, 3.5
#: The last day of the month: the same day's model where the credit renews at its midnight.
MONTH_END_DAY = datetime(2026, 12, 31, tzinfo=UTC)
WEIGHT = {"critical": 3, "normal": 2, "background": 1}
SLOTS, SEED_RETRY, SEED_TRIES = 2, timedelta(minutes=5), 3

TASKS = TasksFile.model_validate({"tasks": [
    {"id": "blog-post", "cron": "0 7 * * 2", "prompt": "x", "max_turns": 25, "priority": "normal"},
    {"id": "daily-social-post", "cron": "0 9 * * *", "prompt": "x", "max_turns": 15},
    {"id": "inbox-triage", "cron": "*/30 * * * *", "prompt": "x", "max_turns": 10,
     "priority": "critical"},
    {"id": "alerts-check", "cron": "5 * * * *", "prompt": "x", "max_turns": 6, "priority": "critical"},
    {"id": "news-digest", "cron": "20 6-22 * * *", "prompt": "x", "max_turns": 20,
     "cheaper_model": "haiku"},
    {"id": "research-crawl", "cron": "*/15 * * * *", "prompt": "x", "max_turns": 12,
     "priority": "background"},
    {"id": "consolidate", "cron": "40 */2 * * *", "prompt": "x", "max_turns": 10,
     "priority": "background"},
    {"id": "chat", "prompt": "x", "max_turns": 10},
]})
#: Turns each task actually takes (per step for the three-step blog post), under its cap.
TURNS = {"blog-post": 6, "daily-social-post": 5, "inbox-triage": 4, "alerts-check": 2,
         "news-digest": 6, "research-crawl": 6, "consolidate": 5, "chat": 3}
STEPS = {"blog-post": 3}


@dataclass
class Run:
    task: str
    at: datetime
    trigger: str = "cron"
    tries: int = 0
    done: bool = False
    lost: str = ""  # why it never completed
    in_window: int = 0  # requests sent into the refused window

    @property
    def priority(self) -> str:
        if self.trigger == "chat":
            return "critical"  # a person is waiting: weighted, and reserved for, as critical
        task = TASKS.get(self.task)
        assert task is not None
        return task.priority


@dataclass
class Api:
    """The subscription as the API sees it: windows, other use, the credit."""

    day: datetime = DAY
    spent: float = SPENT_BEFORE
    ours: dict[datetime, float] = field(default_factory=dict)  # our use per window (by its reset)
    refused: int = 0
    in_window: int = 0

    def window(self, t: datetime) -> tuple[datetime, float]:
        reset = next(self.day + timedelta(hours=h) for h in (-3, 2, 7, 12, 17, 22, 27)
                     if self.day + timedelta(hours=h) > t)
        start = reset - timedelta(hours=5)
        other = 0.05
        if reset == self.day + timedelta(hours=12):  # the morning window: full by 10:00
            other = 0.2 + 0.8 * min(1.0, (t - start) / timedelta(hours=3))
        return reset, min(1.0, other + self.ours.get(reset, 0.0))

    def request(self, t: datetime, model: str, run: Run) -> tuple[bool, dict[str, Any]]:
        reset, used = self.window(t)
        report = {"status": "allowed", "resets_at": reset.timestamp(), "utilization": used,
                  "window_type": "five_hour"}
        if used >= 1.0:
            self.refused += 1
            self.in_window += 1
            run.in_window += 1
            return False, {**report, "status": "rejected"}
        if self.spent + PRICE[model] > CREDIT:
            self.refused += 1
            return False, report
        self.spent += PRICE[model]
        self.ours[reset] = self.ours.get(reset, 0.0) + 0.001
        return True, report


def fires(day: datetime = DAY) -> list[Run]:
    runs = [Run(t.id, at) for t in TASKS.tasks if (spec := t.cron_spec())
            for at in cron.fires_between(spec, day - timedelta(microseconds=1),
                                         day + timedelta(days=1, microseconds=-1), t.zone("UTC"))]
    chat = day + timedelta(hours=8)
    while chat <= day + timedelta(hours=22):
        runs.append(Run("chat", chat, trigger="chat"))
        chat += timedelta(minutes=50)
    return sorted(runs, key=lambda r: r.at)


class Day:
    """One policy over the day."""

    def __init__(self, policy: str, limits: Limits, day: datetime = DAY) -> None:
        self.policy = policy  # seed, today, admission, or admission-fixed (the whole reserve kept)
        self.limits = limits
        self.day, self.end = day, day + timedelta(days=1)
        self.api = Api(day=day)
        self.recent = RecentCosts()
        self.runs = fires(day)
        self.queue: list[tuple[datetime, int, Run]] = []
        self.seq = itertools.count()
        self.decisions: dict[str, int] = {}
        self.max_month = SPENT_BEFORE
        self.rng = random.Random(7)

    def push(self, at: datetime, run: Run) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), run))

    async def play(self) -> dict[str, Any]:
        for run in self.runs:
            self.push(run.at, run)
        slots = [self.day] * SLOTS
        while self.queue:
            ready, _, run = heapq.heappop(self.queue)
            slot = min(range(SLOTS), key=lambda i: slots[i])
            start = max(ready, slots[slot])
            if start >= self.end:
                run.lost = run.lost or "still queued at midnight"
                continue
            if start > ready:  # the slot was busy: take the next ready run when it frees
                self.push(start, run)
                continue
            slots[slot] = await self.start(run, start)
        return self.report()

    async def start(self, run: Run, now: datetime) -> datetime:
        """Handle one delivery at `now`; returns when the worker slot is free again."""
        task = TASKS.get(run.task)
        assert task is not None
        model, cap = "sonnet", task.max_turns
        if self.policy != "seed":
            refusal = await self.limits.check(now)
            if refusal is not None and refusal.retry_in is not None:
                self.push(now + timedelta(seconds=refusal.retry_in + self.rng.uniform(0, 30)), run)
                return now
            if refusal is not None:
                run.lost = refusal.limit
                return now
        if self.policy.startswith("admission"):
            record = self.limits.last
            window = record.window
            usage = Usage(spend_day=record.spend_day.get(f"{now:%Y-%m-%d}", 0.0),
                          spend_month=record.spend_month.get(f"{now:%Y-%m}", 0.0),
                          utilization=window.utilization if window else None,
                          resets_at=window.resets_at.timestamp() if window and window.resets_at else None)
            decision = admit(run.priority if run.trigger != "chat" else task.priority,
                             interactive=run.trigger == "chat", max_turns=task.max_turns,
                             cheaper_model=task.cheaper_model, expected_cost=self.recent.mean(run.task),
                             budget=Budget(credit_month=CREDIT, cap_month=CREDIT, reserve=RESERVE,
                                           busy_utilization=0.8, reduced_turns=8),
                             usage=usage, now=now.timestamp(),
                             next_fire=fire.timestamp() if (spec := task.cron_spec())
                             and (fire := cron.next_fire(spec, now, task.zone("UTC"))) else None,
                             scheduled_need=None if self.policy == "admission-fixed" else
                             lambda until: scheduled_need(TASKS, self.recent, now,
                                                          datetime.fromtimestamp(until, UTC)))
            self.decisions[decision.decision] = self.decisions.get(decision.decision, 0) + 1
            if decision.decision == "skip":
                run.lost = "skipped"
                return now
            if decision.wait_until is not None:
                self.push(datetime.fromtimestamp(decision.wait_until, UTC), run)
                return now
            model, cap = decision.model or model, decision.max_turns or cap
        return await self.execute(run, now, model, cap)

    async def execute(self, run: Run, now: datetime, model: str, cap: int) -> datetime:
        t, cost, ok, report = now, 0.0, True, None
        for _ in range(STEPS.get(run.task, 1)):
            for turn in range(TURNS[run.task]):
                if turn >= cap:
                    ok = False  # turn cap: the step ends unfinished
                    break
                ok, report = self.api.request(t, model, run)
                t += REQUEST
                if not ok:
                    break
                cost += PRICE[model]
            if not ok:
                break
        if self.policy != "seed":
            if cost:
                record = await self.limits.add_spend(cost, now=t)
                self.max_month = max(self.max_month, record.spend_month.get(f"{t:%Y-%m}", 0.0))
            if report is not None:
                await self.limits.record_window(report)
        else:
            self.max_month = self.api.spent
        if ok:
            run.done = True
            self.recent.add(run.task, cost)
            return t
        if report and report["status"] == "rejected" and self.policy != "seed":
            until = float(report["resets_at"])  # the pause, as the worker takes it
            await self.limits.pause(until, "rate limited (simulated)")
            self.push(datetime.fromtimestamp(until, UTC) + timedelta(seconds=self.rng.uniform(0, 30)),
                      run)
            return t
        run.tries += 1
        if self.policy == "seed" and run.tries <= SEED_TRIES:
            self.push(t + SEED_RETRY, run)
        else:
            run.lost = "failed"
        return t

    def report(self) -> dict[str, Any]:
        done = [r for r in self.runs if r.done]
        critical = [r for r in self.runs if r.priority == "critical"]
        return {
            "runs": len(self.runs), "completed": len(done),
            "weighted": sum(WEIGHT[r.priority] for r in done),
            "weighted_max": sum(WEIGHT[r.priority] for r in self.runs),
            "critical_missed": sum(1 for r in critical if not r.done),
            "requests_in_window": self.api.in_window,
            "max_requests_in_window_per_run": max((r.in_window for r in self.runs), default=0),
            "requests_refused": self.api.refused,
            "spend_usd": round(self.api.spent - SPENT_BEFORE, 3),
            "month_spend_max_usd": round(max(self.max_month, self.api.spent), 3),
            "over_cap": max(self.max_month, self.api.spent) > CREDIT + 1e-9,
            "decisions": self.decisions,
        }


def budget_bound(day: datetime = DAY) -> float:
    """The most weight any policy could complete with the money left: every run of the day at
    its cheapest (the cheaper model where a normal task allows one), best weight per dollar
    first, the last one in part. Time and the refused window are ignored, so no policy that
    holds the credit can do better."""
    money, weight = CREDIT - SPENT_BEFORE, 0.0
    priced = []
    for run in fires(day):
        task = TASKS.get(run.task)
        assert task is not None
        cheap = task.cheaper_model if task.cheaper_model and run.priority == "normal" else "sonnet"
        priced.append((WEIGHT[run.priority], TURNS[run.task] * STEPS.get(run.task, 1) * PRICE[cheap]))
    for w, cost in sorted(priced, key=lambda wc: -wc[0] / wc[1]):
        take = min(1.0, money / cost)
        weight, money = weight + w * take, money - cost * take
        if money <= 0:
            break
    return weight


async def play(policies: tuple[str, ...], day: datetime) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    async with bench_env() as env:
        kv = env.bus.kv["limits"]
        for policy in policies:
            await kv.purge("state")
            settings = KodaSettings(spend_cap_month_usd=CREDIT)
            limits = Limits(kv, settings)
            await limits.add_spend(SPENT_BEFORE, now=day - timedelta(days=1))  # earlier this month
            results[policy] = await Day(policy, limits, day).play()
    return results


def table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'policy':<16} {'weighted':>9} {'done':>9} {'crit missed':>11} {'req in window':>13} "
          f"{'max/run':>7} {'refused':>7} {'spend $':>8} {'month $':>8}")
    for name, r in results.items():
        print(f"{name:<16} {r['weighted']:>4}/{r['weighted_max']:<4} {r['completed']:>4}/{r['runs']:<4} "
              f"{r['critical_missed']:>11} {r['requests_in_window']:>13} "
              f"{r['max_requests_in_window_per_run']:>7} {r['requests_refused']:>7} "
              f"{r['spend_usd']:>8.2f} {r['month_spend_max_usd']:>8.2f}")


async def main() -> None:
    results = await play(("seed", "today", "admission-fixed", "admission"), DAY)
    seed, fixed, new = results["seed"], results["admission-fixed"], results["admission"]
    bound = budget_bound(DAY)
    print(f"{DAY:%Y-%m-%d} (the credit renews in 3 days)")
    table(results)
    print(f"credit ${CREDIT:.2f}, ${SPENT_BEFORE:.2f} spent before the day, reserve ${RESERVE:.2f}; "
          f"admission decisions {new['decisions']}")
    print(f"budget bound: at most {bound:.0f} weighted ({bound / seed['weighted']:.2f}x the seed) "
          f"for any policy within the credit; 2x would be {2 * seed['weighted']}")
    last = await play(("admission-fixed", "admission"), MONTH_END_DAY)
    print(f"{MONTH_END_DAY:%Y-%m-%d} (the credit renews at midnight)")
    table(last)
    ratio = new["weighted"] / max(1, seed["weighted"])
    passed = (ratio >= 2 and new["critical_missed"] == 0
              and new["max_requests_in_window_per_run"] <= 1 and not new["over_cap"])
    save("quota_day", {
        "weighted_seed": seed["weighted"], "weighted_today": results["today"]["weighted"],
        "weighted_admission_fixed_reserve": fixed["weighted"],
        "weighted_admission": new["weighted"], "ratio_vs_seed": round(ratio, 2),
        "budget_bound_weighted": round(bound, 1),
        "budget_bound_ratio_vs_seed": round(bound / max(1, seed["weighted"]), 2),
        "critical_missed_seed": seed["critical_missed"],
        "critical_missed_today": results["today"]["critical_missed"],
        "critical_missed_admission": new["critical_missed"],
        "window_requests_seed": seed["requests_in_window"],
        "window_requests_today": results["today"]["requests_in_window"],
        "window_requests_admission": new["requests_in_window"],
        "max_window_requests_per_run_admission": new["max_requests_in_window_per_run"],
        "spend_seed": seed["spend_usd"], "spend_today": results["today"]["spend_usd"],
        "spend_admission": new["spend_usd"], "over_cap_admission": new["over_cap"],
        "month_end_weighted_admission_fixed_reserve": last["admission-fixed"]["weighted"],
        "month_end_weighted_admission": last["admission"]["weighted"],
        "month_end_critical_missed_admission": last["admission"]["critical_missed"],
        "month_end_over_cap_admission": last["admission"]["over_cap"],
        "pass": passed, "policies": results, "month_end_policies": last})


if __name__ == "__main__":
    asyncio.run(main())
