"""The shipped NATS config with a user per service: every service runs under its own user with
compose's environment and passes compose's healthcheck, and a user cannot publish, write or
fetch what belongs to another service."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout

from koda.shared.settings import SERVICES
from koda.stack import nats_binary
from tests.deploy.artifacts import NATS_CONF, ROOT, compose_model, duration_seconds
from tests.natsserver import free_port_block

pytestmark = pytest.mark.slow
KODA = str(Path(sys.executable).parent / "koda")


@dataclass
class UsersStack:
    """NATS with the shipped users, and each service started with its compose environment."""

    root: Path
    nats_url: str = ""
    passwords: dict[str, str] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def healthy(self, service: str) -> bool:
        """Compose's healthcheck command for the service, with compose's timeout."""
        check = compose_model_cache()["services"][service]["healthcheck"]  # type: ignore[index]
        argv = check["test"][1:]
        assert argv[0] == "koda"
        try:
            return subprocess.run([KODA, *argv[1:]], env=self.envs[service], capture_output=True,
                                  timeout=duration_seconds(check["timeout"]), cwd=self.root).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text()[-4000:] if path.exists() else ""


_MODEL: dict[str, object] = {}


def compose_model_cache() -> dict:  # type: ignore[type-arg]
    if not _MODEL:
        _MODEL.update(compose_model())
    return _MODEL


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nats-server did not start")


def _env(compose_env: dict[str, str | None], overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in compose_env.items() if v is not None}
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return {"PATH": path, "LANG": "C.UTF-8", **env, **overrides}


@pytest.fixture(scope="module")
def users_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsersStack]:
    model = compose_model_cache()
    services = model["services"]  # type: ignore[index]
    root = tmp_path_factory.mktemp("users")
    out = UsersStack(root)
    port = free_port_block(2)
    out.nats_url = f"nats://127.0.0.1:{port}"
    nats_env = _env(services["nats"]["environment"], {})
    out.passwords = {s: nats_env[f"KODA_NATS_PASSWORD_{s.upper()}"] for s in SERVICES}
    # The shipped file with only its store moved into the test's folder (NATS will not take
    # both `store_dir` and `-sd`); flags move it off the container's port and monitor port.
    text = NATS_CONF.read_text()
    assert text.count('store_dir: "/koda/nats"') == 1
    conf = root / "nats.conf"
    conf.write_text(text.replace('store_dir: "/koda/nats"', f'store_dir: "{root / "store"}"'))
    with open(root / "nats.log", "wb") as log:
        out.procs["nats"] = subprocess.Popen(
            [nats_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port),
             "-m", str(port + 1)], env=nats_env, stdout=log, stderr=log)
    _wait_for_port(port, out.procs["nats"], root / "nats.log")
    port_base = free_port_block(12) - 1
    local = {
        "KODA_HOME": str(root / "home"), "KODA_SOURCE_DIR": str(ROOT),
        "KODA_NATS_URL": out.nats_url, "KODA_HTTP_HOST": "127.0.0.1",
        "KODA_PORT_BASE": str(port_base), "KODA_HEARTBEAT_INTERVAL": "0.5",
        "KODA_HEARTBEAT_TTL": "5", "KODA_DRAIN_TIMEOUT": "3", "HOME": str(root),
    }
    init = subprocess.run([KODA, "init"], env=_env(services["init"]["environment"], local),
                          capture_output=True, text=True, timeout=60, cwd=root)
    assert init.returncode == 0, init.stderr
    try:
        for name in SERVICES:
            env = _env(services[name]["environment"],
                       {**local, "KODA_STATE_DIR": str(root / f"state-{name}")})
            out.envs[name] = env
            with open(root / f"{name}.log", "wb") as log:
                out.procs[name] = subprocess.Popen(
                    services[name]["command"], env=env, stdout=log, stderr=subprocess.STDOUT,
                    cwd=root)
        yield out
    finally:
        for proc in reversed(list(out.procs.values())):
            proc.terminate()
        for proc in out.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_every_service_runs_under_its_own_user_and_passes_its_healthcheck(
        users_stack: UsersStack) -> None:
    deadline = time.monotonic() + 40
    pending = set(SERVICES)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            assert users_stack.procs[name].poll() is None, f"{name} exited:\n{users_stack.log(name)}"
            if users_stack.healthy(name):
                pending.discard(name)
        time.sleep(0.3)
    assert not pending, {name: users_stack.log(name) for name in pending}
    violations = [line for line in users_stack.log("nats").splitlines() if "Violation" in line]
    assert not violations, violations


async def _try_publish(stack: UsersStack, user: str, subject: str) -> str | None:
    """Publish as `user`; returns the server's error, or None if it was accepted."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(stack.nats_url, user=user, password=stack.passwords[user],
                            error_cb=on_error, allow_reconnect=False)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush(timeout=2)
        await asyncio.sleep(0.2)  # a permissions error arrives asynchronously
    finally:
        await nc.close()
    return errors[0] if errors else None


@pytest.mark.parametrize(("user", "subject"), [
    ("actions", "koda.runs.daily-post"),             # only the scheduler, gateway, watchdog, worker fire runs
    ("worker", "koda.actions.video.publish"),        # approved actions come from the gateway only
    ("scheduler", "$KV.approvals.a1"),                # approvals are the worker's and the gateway's
    ("scraper", "$KV.health.worker.fake"),            # nobody heartbeats for another service
    ("gateway", "$JS.API.CONSUMER.MSG.NEXT.RUNS.runs-workers"),  # nor takes the worker's runs
    ("watchdog", "$JS.API.STREAM.DELETE.EVENTS"),     # nobody deletes the audit log
    ("scheduler", "$JS.ACK.RUNS.runs-workers.1.1.1.1.1"),
])
async def test_a_user_cannot_touch_what_another_service_owns(
        users_stack: UsersStack, user: str, subject: str) -> None:
    error = await _try_publish(users_stack, user, subject)
    assert error is not None and "permissions violation" in error.lower(), error


@pytest.mark.parametrize(("user", "subject"), [
    ("scheduler", "koda.runs.daily-post"),
    ("gateway", "koda.actions.video.publish"),
    ("worker", "koda.actions.script.post-x"),
    ("watchdog", "$KV.scheduler.pause.daily-post"),
    ("actions", "koda.events.action.done"),
])
async def test_a_user_may_publish_its_own_subjects(users_stack: UsersStack, user: str,
                                                   subject: str) -> None:
    assert await _try_publish(users_stack, user, subject) is None


async def test_a_wrong_password_is_refused(users_stack: UsersStack) -> None:
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, NatsTimeout, OSError)):
        await nats.connect(users_stack.nats_url, user="worker", password="not-the-password",
                           allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
