"""`koda tasks` shows each task's priority and the worker's last admission decision."""

from __future__ import annotations

from datetime import UTC, datetime

from koda.shared.bus import Bus
from koda.shared.messages import AdmissionRecord
from koda.shared.settings import KodaSettings
from tests.scheduler.helpers import task, write_tasks
from tests.scheduler.test_task_commands import koda, output


async def test_tasks_shows_priority_and_last_admission(settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [{**task("tidy", "0 * * * *"), "priority": "background"},
                           {**task("digest", "0 9 * * *"), "cheaper_model": "claude-haiku-4-5"},
                           {**task("alarm", "*/5 * * * *"), "priority": "critical"}])
    held = AdmissionRecord(task="tidy", run_id="tidy.1", priority="background", decision="wait",
                           reason="window 93% used",
                           wait_until=datetime(2026, 12, 2, 12, 1, tzinfo=UTC))
    reduced = AdmissionRecord(task="digest", run_id="digest.1", decision="reduce", max_turns=8,
                              model="claude-haiku-4-5", reason="window 93% used")
    for record in (held, reduced):
        await bus.kv["limits"].put(f"admission.{record.task}", record.to_bytes())
    code, out, err = await output(await koda(settings, "tasks"))
    assert code == 0, err
    assert "PRIORITY" in out.splitlines()[0] and "ADMISSION" in out.splitlines()[0]
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "background" in lines["tidy"] and "wait until 12:01" in lines["tidy"]
    assert "normal" in lines["digest"] and "reduce (8 turns, claude-haiku-4-5)" in lines["digest"]
    assert "critical" in lines["alarm"] and lines["alarm"].rstrip().endswith("-")
