"""Spend limits: a session's budget, and the daily cap across runs; a refusal says which."""

from __future__ import annotations

from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import FakeAnthropic, tool_loop
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks


async def test_session_budget_and_daily_cap_stop_runs_and_say_which(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    # Each fake turn costs about $0.0006; the daily cap is crossed by the first run.
    settings = wsettings.model_copy(update={"spend_cap_day_usd": 0.001, "worker_concurrency": 1})
    write_tasks(settings,
                {"id": "pricey", "prompt": "Keep going.", "max_budget_usd": 0.001},
                {"id": "cheap", "prompt": "One line."})
    fake_api.script = tool_loop(10, final="finished")
    pricey, cheap = run_request("pricey"), run_request("cheap", 1)
    async with running_worker(settings) as worker:
        await publish_run(bus, pricey)
        await events.wait(lambda: events.finished(), timeout=60)
        await publish_run(bus, cheap)
        await events.wait(lambda: len(events.finished()) == 2, timeout=60)
        metrics = worker.registry
    [budget] = events.finished_for(pricey.run_id)
    assert budget.event == "run.failed"
    assert "budget" in budget.data["error"], budget.data
    assert budget.data["turns"] < 10  # stopped by the budget, not by the end of the work
    [refused] = events.finished_for(cheap.run_id)
    assert refused.data["outcome"] == "refused" and refused.data["limit"] == "spend_day"
    assert "daily spend cap" in refused.data["error"]
    assert len([c for c in fake_api.main_calls() if "One line." in c.prompt]) == 0
    spent = metrics.get_sample_value("koda_spend_usd", {"period": "day"})
    assert spent is not None and spent >= 0.001
    assert metrics.get_sample_value("koda_runs_total", {"task": "cheap", "outcome": "refused"}) == 1
