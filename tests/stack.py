"""A whole Koda stack under supervisord on a temp home, driven through the real `koda` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from koda.shared.settings import SERVICES, KodaSettings
from tests.natsserver import free_port_block

KODA = str(Path(sys.executable).parent / "koda")


class Stack:
    """Start with `up()`, stop with `down()`; helpers read status, metrics and logs."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.home = root / "home"
        self.state = root / "state"
        nats_port = free_port_block(1)
        self.port_base = free_port_block(7) - 1
        self.env = {
            **os.environ,
            "KODA_HOME": str(self.home),
            "KODA_STATE_DIR": str(self.state),
            "KODA_NATS_PORT": str(nats_port),
            "KODA_NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "KODA_PORT_BASE": str(self.port_base),
            "KODA_HEARTBEAT_INTERVAL": "1.0",
            "KODA_HEARTBEAT_TTL": "5.0",
            "KODA_DRAIN_TIMEOUT": "5",
            **(extra_env or {}),
        }
        self.settings = KodaSettings(
            home=self.home, state_dir=self.state, nats_url=self.env["KODA_NATS_URL"],
            nats_port=nats_port, port_base=self.port_base, heartbeat_ttl=5.0,
        )

    def koda(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KODA, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=self.root)

    def up(self, wait: float = 30) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self.koda("up", "-d", "--wait", str(wait), timeout=wait + 30)
        self.up_seconds = time.monotonic() - started
        if result.returncode != 0:
            self.down()
            raise RuntimeError(f"koda up failed:\n{result.stdout}\n{result.stderr}\n{self.logs()}")
        # Every NATS client of the stack needs a user: tests connect as the CLI's.
        self.settings = self.settings.model_copy(update=self.credentials("koda"))
        return result

    def credentials(self, user: str) -> dict[str, Any]:
        """`nats_user` and `nats_password` of one of the stack's NATS users (after `up`)."""
        from pydantic import SecretStr

        from koda import natsauth

        password = natsauth.read(self.settings)[user]
        return {"nats_user": user, "nats_password": SecretStr(password)}

    @property
    def client_url(self) -> str:
        """The NATS URL with the CLI user's credentials in it, for plain nats-py clients."""
        creds = self.credentials("koda")
        return self.env["KODA_NATS_URL"].replace(
            "nats://", f"nats://koda:{creds['nats_password'].get_secret_value()}@")

    def down(self) -> None:
        self.koda("down", timeout=60)

    def status(self) -> dict[str, dict[str, Any]]:
        result = self.koda("status", "--json")
        return {row["name"]: row for row in json.loads(result.stdout)}

    def supervisorctl(self, *args: str) -> str:
        conf = self.state / "supervisord.conf"
        exe = str(Path(sys.executable).parent / "supervisorctl")
        return subprocess.run([exe, "-c", str(conf), *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def pid(self, service: str) -> int:
        return int(self.supervisorctl("pid", service))

    def port(self, service: str) -> int:
        return self.port_base + 1 + SERVICES.index(service)

    def http(self, service: str, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port(service)}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, service: str, name: str, labels: str = "") -> float | None:
        """The value of one sample on a service's /metrics, e.g. metric('watchdog', 'x', 'a="b"')."""
        _, text = self.http(service, "/metrics")
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return None

    def logs(self, service: str | None = None) -> str:
        names = [service] if service else list(SERVICES)
        out = []
        for name in names:
            for suffix in (".err.log", ".log"):
                path = self.state / "logs" / f"{name}{suffix}"
                if path.exists():
                    out.append(f"--- {path.name}\n" + path.read_text()[-3000:])
        return "\n".join(out)

    def wait_for(self, predicate: Any, timeout: float = 20, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s")


class Violations:
    """Errors the NATS server sends a client asynchronously (permissions violations)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.seen = asyncio.Event()

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        if "permissions violation" in str(exc).lower():
            self.seen.set()

    async def wait(self, timeout: float = 20) -> str:
        """The first permissions violation the server reported (fails the test if none comes)."""
        try:
            await asyncio.wait_for(self.seen.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no permissions violation in {timeout}s; errors: {self.errors}") from None
        return next(e for e in self.errors if "permissions violation" in e.lower())


async def nats_client(url: str, user: str, password: str) -> tuple[Any, Violations]:
    """A plain nats-py client logged in as `user`, and its error collector."""
    import nats

    violations = Violations()
    nc = await nats.connect(url, user=user, password=password, error_cb=violations.on_error,
                            allow_reconnect=False)
    return nc, violations
