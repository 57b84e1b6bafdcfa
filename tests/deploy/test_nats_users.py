"""The shipped NATS config with a user per service: every service runs under its own user with
compose's environment and passes compose's healthcheck, and a user cannot publish, write or
fetch what belongs to another service."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ActionResult, Event, RunRequest
from koda.shared.settings import SERVICES, KodaSettings
from koda.stack import nats_binary
from tests.deploy.artifacts import NATS_CONF, ROOT, compose_model, duration_seconds
from tests.fake_anthropic import API_KEY, FakeAnthropic, say
from tests.natsserver import free_port_block
from tests.stack import nats_client

pytestmark = pytest.mark.slow
KODA = str(Path(sys.executable).parent / "koda")
PROBE_TASK = "deploy-probe"


@dataclass
class UsersStack:
    """NATS with the shipped users, and each service started with its compose environment."""

    root: Path
    nats_url: str = ""
    monitor_port: int = 0
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
        return self.log_full(name)[-4000:]

    def log_full(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""


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
def fake_api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(say("probe done")) as api:
        yield api


@pytest.fixture(scope="module")
def users_stack(tmp_path_factory: pytest.TempPathFactory,
                fake_api: FakeAnthropic) -> Iterator[UsersStack]:
    model = compose_model_cache()
    services = model["services"]  # type: ignore[index]
    root = tmp_path_factory.mktemp("users")
    out = UsersStack(root)
    port = free_port_block(2)
    out.nats_url = f"nats://127.0.0.1:{port}"
    out.monitor_port = port + 1
    nats_env = _env(services["nats"]["environment"], {})
    # compose double-quotes them for NATS's config parser (compose.yaml).
    out.passwords = {s: nats_env[f"KODA_NATS_PASSWORD_{s.upper()}"].strip('"') for s in SERVICES}
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
    tasks = root / "home" / "tasks.json"
    data = json.loads(tasks.read_text())
    data["tasks"] = [{"id": PROBE_TASK, "prompt": "Say that the probe is done."}]
    tasks.write_text(json.dumps(data))
    try:
        for name in SERVICES:
            env = _env(services[name]["environment"],
                       {**local, "KODA_STATE_DIR": str(root / f"state-{name}")})
            if name == "worker":
                env.update(ANTHROPIC_BASE_URL=fake_api.url, ANTHROPIC_API_KEY=API_KEY)
            out.envs[name] = env
            with open(root / f"{name}.log", "wb") as log:
                out.procs[name] = subprocess.Popen(
                    services[name]["command"], env=env, stdout=log, stderr=subprocess.STDOUT,
                    cwd=root)
        yield out
    finally:
        # Services first (they drain over NATS), then NATS.
        services_first = [p for n, p in out.procs.items() if n != "nats"] + [out.procs["nats"]]
        for group in (services_first[:-1], services_first[-1:]):
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


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


def _as(stack: UsersStack, user: str) -> KodaSettings:
    return KodaSettings(nats_url=stack.nats_url, nats_user=user,
                        nats_password=SecretStr(stack.passwords[user]))


def test_the_nats_healthcheck_passes_on_the_shipped_config(users_stack: UsersStack) -> None:
    check = compose_model_cache()["services"]["nats"]["healthcheck"]["test"]  # type: ignore[index]
    assert check[0] == "CMD" and check[1] == "python"
    argv = [sys.executable, *[a.replace("8222", str(users_stack.monitor_port)) for a in check[2:]]]
    assert subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


async def test_a_run_and_a_script_request_cross_services_under_their_own_users(
        users_stack: UsersStack) -> None:
    """The scheduler's run reaches the worker, which finishes it; the worker's script request
    reaches actions, which answers: each hop under its own user, with no violation logged."""
    log_before = len(users_stack.log_full("nats"))
    scheduler = await Bus.connect(_as(users_stack, "scheduler"), "scheduler", ensure=False)
    worker = await Bus.connect(_as(users_stack, "worker"), "worker", ensure=False)
    try:
        finished = await scheduler.nc.subscribe("koda.events.run.finished")
        now = datetime.now(UTC)
        run = RunRequest(task=PROBE_TASK, run_id=f"{PROBE_TASK}.m{int(now.timestamp() * 1000)}",
                         scheduled_for=now, trigger="manual")
        await scheduler.publish(f"koda.runs.{PROBE_TASK}", run, msg_id=run.run_id)
        deadline = time.monotonic() + 60
        event = None
        while event is None or event.run_id != run.run_id:
            msg = await finished.next_msg(timeout=max(0.1, deadline - time.monotonic()))
            event = Event.from_bytes(msg.data)
        assert event.data["outcome"] == "done", (event, users_stack.log("worker"))

        inbox = worker.nc.new_inbox()
        replies = await worker.nc.subscribe(inbox, max_msgs=1)
        request = ActionRequest(name="script.youtube-stats", idempotency_key=f"probe-{run.run_id}",
                                reply_subject=inbox)
        await worker.publish("koda.actions.script.youtube-stats", request,
                             msg_id=request.idempotency_key)
        result = ActionResult.from_bytes((await replies.next_msg(timeout=30)).data)
        # The template's script needs a YouTube key nobody set: a refusal, but a real answer.
        assert result.idempotency_key == request.idempotency_key and not result.ok
    finally:
        await scheduler.close()
        await worker.close()
    new_log = users_stack.log_full("nats")[log_before:]
    assert "Violation" not in new_log, new_log


async def _try_publish(stack: UsersStack, user: str, subject: str) -> str | None:
    """Publish as `user`; returns the server's error, or None if it was accepted."""
    nc, violations = await nats_client(stack.nats_url, user, stack.passwords[user])
    try:
        await nc.publish(subject, b"{}")
        await nc.flush(timeout=2)
        await asyncio.sleep(0.2)  # a permissions error arrives asynchronously
    finally:
        await nc.close()
    return violations.errors[0] if violations.errors else None


@pytest.mark.parametrize(("user", "subject"), [
    ("actions", "koda.runs.daily-post"),             # only the scheduler, gateway, watchdog, worker fire runs
    ("worker", "koda.actions.video.publish"),        # approved actions come from the gateway only
    ("scheduler", "$KV.approvals.a1"),                # approvals are the worker's and the gateway's
    ("scraper", "$KV.health.worker.fake"),            # nobody heartbeats for another service
    ("gateway", "$JS.API.CONSUMER.MSG.NEXT.RUNS.runs-workers"),  # nor takes the worker's runs
    ("watchdog", "$JS.API.STREAM.DELETE.EVENTS"),     # nobody deletes the audit log
    ("scheduler", "$JS.ACK.RUNS.runs-workers.1.1.1.1.1"),
    ("scraper", "$KV.config.tasks"),                  # only services that read tasks.json share it
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
    ("worker", "$KV.config.tasks"),
])
async def test_a_user_may_publish_its_own_subjects(users_stack: UsersStack, user: str,
                                                   subject: str) -> None:
    assert await _try_publish(users_stack, user, subject) is None


def test_a_wrong_password_is_refused(users_stack: UsersStack) -> None:
    host, port = users_stack.nats_url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.recv(4096)  # INFO
        conn.sendall(b'CONNECT {"user":"worker","pass":"not-the-password","verbose":false}\r\nPING\r\n')
        answer = conn.recv(4096).decode()
    assert "Authorization Violation" in answer, answer
