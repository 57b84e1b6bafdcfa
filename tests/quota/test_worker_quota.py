"""The worker, a subscription login and the real CLI: the window the API reports is kept, later
runs are admitted by priority from it, tokens and cost are counted by model, and a forecast
past the credit raises one alert naming the costliest task."""

from __future__ import annotations

import time

from pydantic import SecretStr

from koda.shared.bus import Bus
from koda.shared.messages import AdmissionRecord, LimitsRecord
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import OAUTH_TOKEN, FakeAnthropic, say
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks

CHEAP = "claude-haiku-4-5"


async def test_window_report_drives_admission_by_priority(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    settings = wsettings.model_copy(update={
        "anthropic_api_key": None, "claude_code_oauth_token": SecretStr(OAUTH_TOKEN),
        # Extra usage on: past the tiny credit runs go on, admitted by priority.
        "credit_month_usd": 0.001, "credit_extra_usage": True, "worker_concurrency": 1,
        "admission_reduced_turns": 3})
    write_tasks(settings,
                {"id": "report", "prompt": "Write the report.", "cron": "* * * * *"},
                {"id": "digest", "prompt": "Digest the news.", "priority": "normal",
                 "cheaper_model": CHEAP, "max_turns": 20},
                {"id": "tidy", "prompt": "Tidy the drafts.", "priority": "background"},
                {"id": "alarm", "prompt": "Check the alarm.", "priority": "critical"})
    fake_api.script = say("done")
    window = fake_api.window("allowed_warning", utilization=0.91, resets_in=2 * 3600)
    first = run_request("report")
    async with running_worker(settings) as worker:
        await publish_run(bus, first)
        await events.wait(lambda: events.finished_for(first.run_id))
        entry = await bus.kv["limits"].get("state")
        record = LimitsRecord.from_bytes(entry.value or b"")
        assert record.window is not None and record.window.utilization == 0.91
        assert record.window.window_type == "five_hour"
        assert record.window.resets_at is not None
        assert abs(record.window.resets_at.timestamp() - window.resets_at) < 2

        runs = {name: run_request(name, n) for n, name in enumerate(("digest", "tidy", "alarm"), 1)}
        for request in runs.values():
            await publish_run(bus, request.model_copy(update={"trigger": "cron"}))
        await events.wait(lambda: len(events.of("run.admission")) >= 4)
        await events.wait(lambda: events.finished_for(runs["alarm"].run_id)
                          and events.finished_for(runs["digest"].run_id))
        metrics = worker.registry

    decisions = {e.task: e.data for e in events.of("run.admission")}
    assert decisions["alarm"]["decision"] == "run"
    assert decisions["digest"]["decision"] == "reduce"
    assert decisions["digest"]["max_turns"] == 3 and decisions["digest"]["model"] == CHEAP
    assert decisions["tidy"]["decision"] == "wait" and "91%" in decisions["tidy"]["reason"]
    assert events.finished_for(runs["tidy"].run_id) == []
    # The held run never reached the model; the reduced one ran on the cheaper model.
    def models(text: str) -> set[str]:
        return {str(c.body.get("model")) for c in fake_api.main_calls() if text in c.prompt}

    assert models("Tidy the drafts.") == set()
    assert models("Digest the news.") == {CHEAP}
    assert models("Check the alarm.") and CHEAP not in models("Check the alarm.")
    kept = await bus.kv["limits"].get("admission.tidy")
    held = AdmissionRecord.from_bytes(kept.value or b"")
    assert held.decision == "wait" and held.wait_until is not None
    assert held.wait_until.timestamp() > time.time() + 3600

    [default] = models("Write the report.")  # the CLI's own default model
    assert metrics.get_sample_value("koda_rate_limit_window_utilization") == 0.91
    assert (metrics.get_sample_value("koda_tokens_total",
                                     {"task": "report", "model": default, "kind": "input"}) or 0) > 0
    assert (metrics.get_sample_value("koda_tokens_total",
                                     {"task": "digest", "model": CHEAP, "kind": "output"}) or 0) > 0
    assert metrics.get_sample_value("koda_admission_total",
                                    {"task": "tidy", "priority": "background", "decision": "wait"}) >= 1
    # A task firing every minute at its recent cost passes the $0.001 credit: one alert, named.
    alerts = [e for e in events.of("alert") if e.data.get("kind") == "spend_forecast"]
    assert len(alerts) == 1
    assert "report" in alerts[0].data["costliest"], alerts[0].data
