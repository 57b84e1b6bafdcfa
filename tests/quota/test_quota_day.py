"""The simulated day of `bench.quota_day`: admission misses no critical run, sends at most one
request per run into the refused window and keeps the month under the credit, where the seed
and today's Koda miss critical runs once the credit runs short."""

from __future__ import annotations

from datetime import timedelta

from bench._worker_common import bench_env
from bench.quota_day import CREDIT, DAY, MONTH_END_DAY, SPENT_BEFORE, Day, budget_bound, play
from koda.services.worker.limits import Limits
from koda.shared.settings import KodaSettings


async def test_admission_day_keeps_critical_runs_and_the_cap() -> None:
    results = {}
    async with bench_env() as env:
        kv = env.bus.kv["limits"]
        for policy in ("seed", "today", "admission"):
            await kv.purge("state")
            limits = Limits(kv, KodaSettings(spend_cap_month_usd=CREDIT))
            await limits.add_spend(SPENT_BEFORE, now=DAY - timedelta(days=1))
            results[policy] = await Day(policy, limits).play()
    seed, today, new = results["seed"], results["today"], results["admission"]
    assert new["critical_missed"] == 0 < min(seed["critical_missed"], today["critical_missed"])
    assert new["max_requests_in_window_per_run"] <= 1 < seed["max_requests_in_window_per_run"]
    assert not new["over_cap"]
    assert new["weighted"] > 1.5 * seed["weighted"]
    assert new["weighted"] <= budget_bound(DAY)


async def test_on_the_months_last_day_the_reserve_goes_to_background_runs_not_to_waste() -> None:
    last = await play(("admission-fixed", "admission"), MONTH_END_DAY)
    fixed, new = last["admission-fixed"], last["admission"]
    assert new["weighted"] > fixed["weighted"] and new["spend_usd"] > fixed["spend_usd"]
    assert new["critical_missed"] == 0 and not new["over_cap"]
