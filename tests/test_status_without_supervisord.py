"""`koda status` where no supervisord runs (a compose container, another host): each service's
state comes from its heartbeat in NATS instead of every service showing DOWN."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.messages import Heartbeat, utcnow
from koda.shared.settings import SERVICES, KodaSettings
from tests.natsserver import NatsServer


async def test_status_reads_heartbeats_when_no_supervisord_answers(
        nats_server: NatsServer, tmp_path: Path) -> None:
    # A long TTL: the health bucket drops a heartbeat after it, and `koda status` takes a few
    # seconds to start on a loaded machine.
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state",
                            nats_url=nats_server.url, heartbeat_ttl=60)
    bus = await Bus.connect(settings, "test", timeout=10)
    try:
        beat = Heartbeat(service="worker", instance="w1", pid=1, started_at=utcnow())
        await bus.kv["health"].put("worker.w1", beat.to_bytes())
    finally:
        await bus.close()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "KODA_HOME": str(settings.home), "KODA_STATE_DIR": str(settings.state_dir),
           "KODA_NATS_URL": settings.nats_url, "KODA_HEARTBEAT_TTL": "60"}
    koda = str(Path(sys.executable).parent / "koda")
    result = await asyncio.to_thread(subprocess.run, [koda, "status", "--json"], env=env,
                                     capture_output=True, text=True, timeout=60)
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["nats"]["state"] == "UP"
    assert rows["worker"]["state"] == "UP" and rows["worker"]["heartbeat_age_s"] < 60
    for name in set(SERVICES) - {"worker"}:
        assert rows[name]["state"] == "DOWN", rows[name]
    assert result.returncode == 1  # not every service is up
