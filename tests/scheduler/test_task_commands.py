"""`koda run TASK [--wait]` and `koda tasks`, through the real command against a real NATS."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.cron_words import describe_expression
from koda.shared.messages import Event, RunLedgerEntry, RunRequest, TaskPause
from koda.shared.settings import KodaSettings
from tests.natsserver import free_port_block

from .helpers import run_requests, task, write_tasks

KODA = str(Path(sys.executable).parent / "koda")


async def koda(settings: KodaSettings, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "KODA_HOME": str(settings.expanded_home()), "KODA_NATS_URL": settings.nats_url}
    return await asyncio.create_subprocess_exec(
        KODA, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def output(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def finished(run_id: str, outcome: str) -> Event:
    """What the worker emits at the end of a run: run.finished when done, else run.failed."""
    return Event(event="run.finished" if outcome == "done" else "run.failed", service="worker",
                 task=run_id.split(".")[0], run_id=run_id,
                 data={"outcome": outcome, "turns": 4, "cost_usd": 0.0123, "duration_s": 2.5,
                       "result": "Posted the summary."})


async def test_run_publishes_a_manual_request(settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task("report", "0 9 * * *")])
    code, out, err = await output(await koda(settings, "run", "report"))
    assert code == 0, err
    [request] = await run_requests(bus, "report")
    assert request.trigger == "manual" and request.run_id.startswith("report.m")
    assert out.strip() == f"queued {request.run_id}"
    code, _, err = await output(await koda(settings, "run", "nope"))
    assert code == 2 and "no task 'nope'" in err and "known: report" in err


async def new_requests(bus: Bus, seen: set[str]) -> list[RunRequest]:
    while True:
        fresh = [r for r in await run_requests(bus, "report") if r.run_id not in seen]
        if fresh:
            return fresh
        await asyncio.sleep(0.05)


async def test_run_wait_prints_the_outcome_and_exits_by_it(settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task("report", "0 9 * * *")])
    for outcome, want_code in (("done", 0), ("turn_cap", 1)):
        seen = {r.run_id for r in await run_requests(bus, "report")}
        proc = await koda(settings, "run", "report", "--wait")
        requests = await asyncio.wait_for(new_requests(bus, seen), 20)
        # The worker finishes the run and says so, as it does in production.
        await bus.emit(finished(requests[0].run_id, outcome))
        code, out, _ = await output(proc)
        assert code == want_code
        assert f"{requests[0].run_id}: {outcome}, 4 turns, $0.0123, 2.5s" in out
        assert "Posted the summary." in out


async def test_tasks_lists_schedule_in_words_next_fire_and_last_outcome(
        settings: KodaSettings, bus: Bus) -> None:
    write_tasks(settings, [task("report", "30 8 * * 1-5", timezone="Europe/Berlin"),
                           task("sync", "*/30 * * * *"), task("adhoc", "0 0 1 1 *", enabled=False),
                           {"id": "by-hand", "prompt": "only when asked"}])
    older = RunLedgerEntry(run_id="report.1", task="report", status="failed")
    newer = RunLedgerEntry(run_id="report.2", task="report", status="done")
    for entry in (older, newer):
        await bus.kv["runs"].put(entry.run_id, entry.to_bytes())
    pause = TaskPause(task="sync", paused_by="gateway", reason="paused from Discord")
    await bus.kv["scheduler"].put("pause.sync", pause.to_bytes())
    code, out, err = await output(await koda(settings, "tasks"))
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "at 08:30 on Monday to Friday (Europe/Berlin)" in lines["report"]
    assert "CET" in lines["report"] or "CEST" in lines["report"]
    assert "done" in lines["report"] and "report.2" in lines["report"]
    assert "every 30 minutes (UTC)" in lines["sync"] and "paused: paused from Discord" in lines["sync"]
    assert "disabled" in lines["adhoc"] and "never ran" in lines["adhoc"]
    assert "manual only" in lines["by-hand"]


def test_schedules_in_words() -> None:
    cases = {
        "0 9 * * *": "at 09:00 every day",
        "*/5 * * * *": "every 5 minutes",
        "@hourly": "every hour",
        "0 9 * * 1-5": "at 09:00 on Monday to Friday",
        "0 9,17 * * sat,sun": "at 09:00 and 17:00 on Sunday and Saturday",
        "0 0 1 * *": "at 00:00 on day 1 of the month",
        "*/10 * * * * *": "every 10 seconds",
        "0 */2 * * *": "every 2 hours",
        "15 8 1,15 * mon": "at 08:15 on days 1 and 15 of the month or on Monday",
        "*/30 9-17 * * 1-5": "at minutes 0 and 30 of hours 9 to 17 on Monday to Friday",
        "0 0 1 1 *": "at 00:00 on day 1 of the month in January",
    }
    for expression, words in cases.items():
        assert describe_expression(expression) == words, expression
    assert describe_expression("0 9 * * *", "Asia/Tokyo") == "at 09:00 every day (Asia/Tokyo)"


async def test_tasks_without_a_bus_still_lists_schedules(settings: KodaSettings, tmp_path: Path) -> None:
    write_tasks(settings, [task("report", "0 9 * * *")])
    away = settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port_block(1)}"})
    code, out, _ = await output(await koda(away, "tasks"))
    assert code == 0
    assert "at 09:00 every day (UTC)" in out and "the bus is not reachable" in out
    (settings.expanded_home() / "tasks.json").write_text('{"tasks": [{"id": "x", "cron": "61 * * * *"}]}')
    code, _, err = await output(await koda(away, "tasks"))
    assert code == 1 and "tasks[0].cron: minute: 61 is outside 0-59" in err
