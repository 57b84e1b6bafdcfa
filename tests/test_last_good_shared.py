"""One last good tasks.json for every service (the `config` KV), on a real nats-server: a worker
that restarts on a broken file runs the newest good version the scheduler saw, not its own
older copy, and so does the watchdog; with NATS gone it runs its saved copy."""

from __future__ import annotations

import json
import os
from pathlib import Path

from koda.services.scheduler.reload import TasksFileWatch
from koda.services.watchdog.heal import dependent_tasks
from koda.services.worker.task_lookup import TaskLookup
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.kv_record import KVRecords
from koda.shared.lastgood import LastGood
from koda.shared.messages import LastGoodConfig
from koda.shared.tasks import parse_tasks


def _write(path: Path, tasks: list[str], mtime: int) -> None:
    path.write_text(json.dumps({"tasks": [{"id": t, "prompt": "hi"} for t in tasks]}))
    os.utime(path, (mtime, mtime))


async def test_a_worker_restarting_on_a_broken_file_runs_the_newest_good_version(
        bus: Bus, tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path / "agent")
    layout.tasks.parent.mkdir(parents=True)
    worker_state, scheduler_state = tmp_path / "worker-state", tmp_path / "scheduler-state"
    config = bus.kv["config"]
    _write(layout.tasks, ["old"], 1_700_000_000)
    assert (await TaskLookup(layout, worker_state, config).find("old")).id == "old"

    # The scheduler (its own state folder, as in compose) sees a newer good file; then it breaks.
    _write(layout.tasks, ["old", "new"], 1_700_000_100)
    scheduler = TasksFileWatch(layout.tasks, scheduler_state, config)
    assert not isinstance(await scheduler.load(), Exception)
    layout.tasks.write_text('{"tasks": [')

    shared = await KVRecords(config, LastGoodConfig).get("tasks")
    assert shared is not None and shared.value.seen_by == "scheduler"
    restarted = TaskLookup(layout, worker_state, config)
    assert (await restarted.find("new")).id == "new"  # its own copy only knew "old"
    assert restarted.good.error is not None  # and it knows the file itself is broken
    # The watchdog, which never read the file while it was good, holds the same tasks in a crash
    # loop of the worker.
    watchdog = LastGood(layout.tasks, tmp_path / "watchdog-state", "watchdog", parse_tasks)
    assert dependent_tasks("worker", await watchdog.current(config), layout) == ["old", "new"]

    # An older good file read later never replaces the newer shared version.
    _write(layout.tasks, ["stale"], 1_700_000_050)
    await TaskLookup(layout, tmp_path / "gateway-state", config).find("stale")
    shared = await KVRecords(config, LastGoodConfig).get("tasks")
    assert shared is not None and "new" in shared.value.text and "stale" not in shared.value.text

    # NATS unreachable: a restart on the broken file runs the newest copy saved locally.
    layout.tasks.write_text('{"tasks": [')
    await bus.close()
    offline = TaskLookup(layout, worker_state, config)
    assert (await offline.find("new")).id == "new"
