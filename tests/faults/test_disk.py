"""A full disk or a read-only home, for real (a small tmpfs as the home): the run ends `failed`
with the reason, one alert, a terminal ledger entry, one delivery, no `.tmp` left behind, and
`koda run --wait` says why."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from koda.shared.bus import Bus
from koda.shared.messages import RunLedgerEntry
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import API_KEY, Call, FakeAnthropic, Reply, Text
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks

KODA = str(Path(sys.executable).parent / "koda")


@pytest.fixture
def small_home(wsettings: KodaSettings, tmp_path: Path) -> Iterator[KodaSettings]:
    """The initialised home, moved onto an 8 MB tmpfs mounted at its own path."""
    home = wsettings.expanded_home()
    saved = tmp_path / "home-saved"
    shutil.copytree(home, saved, symlinks=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(home)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        shutil.copytree(saved, home, symlinks=True, dirs_exist_ok=True)
        yield wsettings
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(path: Path) -> None:
    """Write until the file system says ENOSPC."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.parametrize("fault", ["full", "read_only"])
async def test_an_unwritable_home_fails_the_run_once_and_says_why(
        small_home: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        fault: str) -> None:
    settings = small_home
    home = settings.expanded_home()
    write_tasks(settings, {"id": "chores", "prompt": "Do the chores."})
    (home / "data" / "runs").mkdir(parents=True, exist_ok=True)

    def script(call: Call) -> Reply:
        # The disk fills (or goes read-only) while the session runs: the record cannot be written.
        if fault == "full":
            fill(home / "filler.bin")
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        return Text("chores done")

    fake_api.script = script
    env = {**os.environ, "KODA_HOME": str(home), "KODA_NATS_URL": settings.nats_url,
           "KODA_STATE_DIR": str(settings.state_dir), "ANTHROPIC_API_KEY": API_KEY}
    async with running_worker(settings):
        cli = await asyncio.create_subprocess_exec(
            KODA, "run", "chores", "--wait", "--timeout", "120", env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(cli.communicate(), 150)
        # A second run on the same broken disk: it fails too, but no second alert.
        second = run_request("chores", 1)
        await publish_run(bus, second)
        await events.wait(lambda: bool(events.finished_for(second.run_id)), 120)
    text = out.decode()
    reason = "No space left on device" if fault == "full" else "Read-only file system"
    assert cli.returncode == 1, text
    assert "failed" in text and reason in text, text

    failed = events.of("run.failed")
    assert len(failed) == 2 and all(reason in e.data["error"] for e in failed), failed
    assert all(e.data["cause"] == "resource" for e in failed)
    alerts = events.of("alert")
    assert len(alerts) == 1 and alerts[0].data["kind"].startswith("resource."), alerts
    for event in failed:
        assert event.run_id is not None
        entry = RunLedgerEntry.from_bytes((await bus.kv["runs"].get(event.run_id)).value)
        assert entry.status == "failed" and reason in (entry.error or "")
    info = await bus.js.consumer_info("RUNS", "runs-workers")
    assert info.num_redelivered == 0 and info.num_pending == 0 and info.num_ack_pending == 0
    assert not list(home.rglob("*.tmp")), list(home.rglob("*.tmp"))
    assert not events.of("message.failed")
