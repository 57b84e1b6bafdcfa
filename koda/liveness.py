"""`koda health SERVICE --liveness`: judge the service process on this host by its own heartbeat,
and kill it when it is alive but silent, so whatever supervises it (Docker's restart policy in
compose) starts it again.

Docker restarts a container only when its process exits: an unhealthy container stays as it is.
A thread inside the service cannot be the judge either: a stopped process (SIGSTOP, a cgroup
freezer) or one whose GIL a stuck call holds stops that thread too. The health check is another
process in the same container and runs every interval anyway, so it is the one that can tell.

It judges one instance (the process it finds here), not the service's freshest heartbeat, so with
`--scale worker=3` a hung worker is not covered by its two siblings' heartbeats. It kills only
when it can read the health bucket itself: with NATS away every heartbeat lapses and a restart
would fix nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from koda.shared.settings import KodaSettings

PROC = Path("/proc")


@dataclass
class Verdict:
    """What the check found: its exit code and the line it prints."""

    code: int
    text: str


def service_pid(service: str, proc: Path = PROC) -> int | None:
    """The pid of `koda service SERVICE` on this host (not an init that runs it, not ourselves)."""
    tail = b"\0".join([b"koda", b"service", service.encode()]) + b"\0"
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # `init: true` runs docker-init with the command as its arguments: that is not the service.
        if cmdline.endswith(tail) and b"init" not in cmdline.split(b"\0")[0].rsplit(b"/", 1)[-1]:
            return int(entry.name)
    return None


def process_age(pid: int, proc: Path = PROC) -> float:
    """Seconds since process `pid` started (field 22 of /proc/PID/stat, in clock ticks after boot)."""
    stat = (proc / str(pid) / "stat").read_text()
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    boot = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines()
                if line.startswith("btime "))
    return time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK"))


async def instance_beat_age(settings: KodaSettings, service: str, instance: str,
                            timeout: float = 3.0) -> float | None:
    """Seconds since the instance's last heartbeat; None if it has none (expired by the bucket's
    TTL or never written). Raises when the bucket cannot be read."""
    from nats.js.errors import KeyNotFoundError

    from koda.shared.bus import Bus
    from koda.shared.messages import Heartbeat

    bus = await Bus.connect(settings, "cli", timeout=timeout, ensure=False)
    try:
        kv = await bus.js.key_value("health")
        try:
            entry = await kv.get(f"{service}.{instance}")
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        beat = Heartbeat.from_bytes(entry.value)
        return max(0.0, (datetime.now(UTC) - beat.at).total_seconds())
    finally:
        await bus.nc.close()


def check(settings: KodaSettings, service: str) -> Verdict:
    pid = service_pid(service)
    if pid is None:
        return Verdict(1, f"{service}: no `koda service {service}` process on this host")
    # The instance id the service gives itself (shared/service.py).
    instance = settings.instance or f"{socket.gethostname()}-{pid}"
    try:
        age = asyncio.run(instance_beat_age(settings, service, instance))
    except Exception as exc:
        return Verdict(1, f"{service}: cannot read the health bucket at {settings.nats_url} ({exc}); "
                          "not judging the process")
    if age is not None and age <= settings.heartbeat_ttl:
        return Verdict(0, f"{service}: {instance} heartbeat {age:.1f}s ago")
    silent = "no heartbeat" if age is None else f"last heartbeat {age:.0f}s ago"
    # A starting service beats within seconds of connecting; give it three TTLs.
    grace = 3 * settings.heartbeat_ttl
    alive_for = process_age(pid)
    if alive_for < grace:
        return Verdict(1, f"{service}: {instance} {silent}, started {alive_for:.0f}s ago")
    try:
        os.kill(pid, signal.SIGKILL)  # SIGKILL: a stopped or stuck process ignores anything else
    except ProcessLookupError:
        return Verdict(1, f"{service}: {instance} exited meanwhile")
    return Verdict(1, f"{service}: {instance} is alive but silent ({silent}, up {alive_for:.0f}s): "
                      f"killed pid {pid} so its supervisor restarts it")
