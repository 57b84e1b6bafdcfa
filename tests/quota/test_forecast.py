"""The month's forecast: spend so far plus each task's fires left times its recent cost."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from koda.services.worker.forecast import RecentCosts, forecast_month, scheduled_need
from koda.shared.run_record import RunRecord
from koda.shared.tasks import TasksFile


def tasks() -> TasksFile:
    return TasksFile.model_validate({"tasks": [
        {"id": "hourly", "cron": "0 * * * *", "prompt": "x"},
        {"id": "daily", "cron": "0 9 * * *", "prompt": "x"},
        {"id": "off", "cron": "* * * * *", "prompt": "x", "enabled": False},
        {"id": "manual", "prompt": "x"},
    ]})


def test_forecast_counts_the_fires_left_in_the_month_at_each_tasks_recent_cost(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for i, (task, cost) in enumerate([("hourly", 0.1), ("hourly", 0.3), ("daily", 2.0),
                                      ("off", 9.0), ("manual", 5.0)]):
        record = RunRecord(run_id=f"{task}.{i}", task=task, trigger="cron", outcome="done",
                           started_at=datetime.now(UTC), cost_usd=cost)
        (runs / f"{task}.{i}.json").write_text(record.model_dump_json())
    (runs / "broken.json").write_text("{")  # half-written: skipped, not fatal
    recent = RecentCosts.from_records(runs)
    assert recent.mean("hourly") == 0.2
    now = datetime(2026, 12, 31, 8, 30, tzinfo=UTC)
    f = forecast_month(tasks(), recent, spent=40.0, now=now)
    # hourly: 09:00 .. 23:00 = 15 fires (midnight is January's); daily: 09:00 once.
    assert f.per_task == {"hourly": 3.0, "daily": 2.0}
    assert f.total == 45.0 and f.month == "2026-12"
    assert f.costliest(1) == [("hourly", 3.0)]


def test_recent_cost_is_the_mean_of_the_last_five_runs() -> None:
    recent = RecentCosts()
    for cost in (10.0, 1.0, 1.0, 1.0, 1.0, 1.0):
        recent.add("t", cost)
    assert recent.mean("t") == 1.0
    assert recent.mean("unknown") == 0.0


def test_the_scheduled_need_before_a_renewal_leaves_background_work_out() -> None:
    listed = TasksFile.model_validate({"tasks": [
        {"id": "triage", "cron": "0 * * * *", "prompt": "x", "priority": "critical"},
        {"id": "digest", "cron": "30 * * * *", "prompt": "x"},
        {"id": "crawl", "cron": "*/5 * * * *", "prompt": "x", "priority": "background"},
    ]})
    recent = RecentCosts()
    for task in ("triage", "digest", "crawl"):
        recent.add(task, 0.1)
    now = datetime(2026, 12, 31, 21, 45, tzinfo=UTC)
    # Until midnight: triage 22:00, 23:00 and digest 22:30, 23:30; midnight itself is January's.
    need = scheduled_need(listed, recent, now, datetime(2027, 1, 1, tzinfo=UTC))
    assert round(need, 6) == 0.4
