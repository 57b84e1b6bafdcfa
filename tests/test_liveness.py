"""`koda health SERVICE --liveness` (compose's health check): a service process that is alive but
silent is killed, so Docker's restart policy, which acts only on an exit, starts it again; one
whose heartbeats lapse only because NATS is away is left alone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from koda.liveness import process_age
from tests.natsserver import NatsServer, free_port_block
from tests.waits import eventually

KODA = str(Path(sys.executable).parent / "koda")


async def test_a_stopped_service_is_killed_and_one_cut_off_from_nats_is_not(
        nats_server: NatsServer, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "KODA_HOME": str(tmp_path / "home"), "KODA_STATE_DIR": str(tmp_path / "state"),
           "KODA_NATS_URL": nats_server.url, "KODA_PORT_BASE": str(free_port_block(7) - 1),
           # Three TTLs (6 s) of grace after the start, then silence means hung.
           "KODA_HEARTBEAT_INTERVAL": "0.5", "KODA_HEARTBEAT_TTL": "2"}
    await asyncio.to_thread(subprocess.run, [KODA, "init"], env=env, check=True,
                            capture_output=True, timeout=60)
    service = await asyncio.to_thread(subprocess.Popen, [KODA, "service", "scheduler"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    verdicts: list[str] = []

    def liveness() -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KODA, "health", "scheduler", "--liveness"], env=env,
                                capture_output=True, text=True, timeout=60)
        verdicts.append(f"{result.returncode}: {result.stdout}{result.stderr}")
        return result

    async def until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        try:
            await eventually(predicate, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"{what}; last verdicts: {verdicts[-3:]}") from None

    try:
        await until(lambda: liveness().returncode == 0, "never healthy")
        # Past the grace a starting service gets, so only NATS being away can stop the kill.
        await until(lambda: process_age(service.pid) > 6.5, "too young", timeout=30)
        # NATS away: every heartbeat lapses and a restart would fix nothing, so no kill.
        nats_server.stop()
        await until(lambda: "cannot read" in liveness().stderr, "NATS away not seen", timeout=30)
        assert service.poll() is None, verdicts[-1]
        nats_server.start()
        await until(lambda: liveness().returncode == 0, "not healthy after NATS came back")

        # Alive but silent (stopped: its own threads stop too): the check kills it.
        service.send_signal(signal.SIGSTOP)
        await until(lambda: liveness().returncode != 0 and service.poll() is not None, "not killed")
        assert service.returncode == -signal.SIGKILL
        assert f"killed pid {service.pid}" in verdicts[-1], verdicts
    finally:
        if service.poll() is None:
            service.kill()
        await asyncio.to_thread(service.wait)
