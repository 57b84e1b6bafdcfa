"""NATS has credentials in every mode: the local stack `koda up` starts refuses anonymous
clients and wrong passwords, runs each service as its own user with the shipped permission
table (so nobody, the worker included, may publish what another service owns), keeps the
passwords in 0600 files of the state folder, and quotes any password nats.conf could misread."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
from pathlib import Path

import nats
import pytest

from koda import natsauth
from koda.shared.settings import SERVICES
from koda.stack import nats_binary
from tests.natsserver import free_port_block
from tests.security.conftest import connect_as
from tests.stack import Stack

pytestmark = pytest.mark.slow


def test_an_anonymous_client_or_a_wrong_password_is_refused(stack: Stack) -> None:
    # The wire protocol itself (nats-py leaves a refused connection's socket open).
    host, port = stack.env["KODA_NATS_URL"].removeprefix("nats://").split(":")
    for credentials in ({}, {"user": "worker", "pass": "not-the-password"},
                        {"user": "koda", "pass": ""}):
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            assert conn.recv(4096).startswith(b"INFO ")
            connect = json.dumps({"verbose": False, **credentials})
            conn.sendall(f"CONNECT {connect}\r\nPING\r\n".encode())
            answer = conn.recv(4096).decode()
        assert "Authorization Violation" in answer, (credentials, answer)


def test_every_service_runs_as_its_own_user_without_a_violation(stack: Stack) -> None:
    status = stack.status()  # `koda status` itself connects as the CLI's user
    assert all(row["state"] == "RUNNING" for row in status.values()), status
    assert all(status[s]["heartbeat_age_s"] is not None for s in SERVICES), status
    conf = (stack.state / "supervisord.conf").read_text()
    for service in SERVICES:
        assert f'KODA_NATS_USER="{service}"' in conf
    log = "\n".join(p.read_text() for p in (stack.state / "logs").glob("nats*.log"))
    assert "Violation" not in log, log[-3000:]


def test_passwords_and_keys_are_private_files_of_the_state_folder(stack: Stack) -> None:
    for name in ("nats-credentials.json", "nats.conf", "supervisord.conf", "approval-keys.json"):
        mode = stat.S_IMODE((stack.state / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE(stack.state.stat().st_mode) == 0o700
    passwords = natsauth.read(stack.settings)
    assert set(passwords) == {*SERVICES, "koda"} and len(set(passwords.values())) == len(passwords)
    assert not any(p in (stack.home / ".env").read_text() for p in passwords.values()
                   if (stack.home / ".env").exists())


@pytest.mark.parametrize(("user", "subject"), [
    ("worker", "koda.actions.video.publish"),         # approved actions come from the gateway
    ("worker", "$KV.scheduler.leader"),               # the scheduler's lock
    ("worker", "$KV.actions.abc"),                    # the actions service's results
    ("worker", "$KV.health.gateway.x"),               # another service's heartbeat
    ("worker", "$JS.API.CONSUMER.MSG.NEXT.ACTIONS.actions-workers"),  # taking actions' work
    ("worker", "$JS.API.STREAM.DELETE.EVENTS"),       # erasing the audit log
    ("koda", "koda.actions.script.publish"),          # the CLI runs no scripts
    ("scraper", "koda.runs.anything"),
])
async def test_a_user_cannot_publish_what_another_service_owns(
        stack: Stack, user: str, subject: str) -> None:
    nc, violations = await connect_as(stack, user)
    try:
        await nc.publish(subject, b"{}")
        refused = await violations.wait()
    finally:
        await nc.close()
    assert subject.lower() in refused.lower(), violations.errors


PASSWORDS = ["123456", "true", "no", "1e5", "-5", "a,b;c}d[e]f g", 'p"q\\r$s#t', "x'y", "${HOME}",
             "$KODA", "é☃", "a\tb"]


def test_a_password_nats_conf_could_misread_is_quoted(tmp_path: Path) -> None:
    """Numbers, booleans, separators, quotes, `$` references and spaces all stay strings."""
    port = free_port_block(1)
    users = ",\n".join(f"{{ user: u{i}, password: {natsauth.quote(p)} }}"
                       for i, p in enumerate(PASSWORDS))
    conf = tmp_path / "nats.conf"
    conf.write_text(f'listen: "127.0.0.1:{port}"\nauthorization {{ users: [\n{users}\n] }}\n')
    check = subprocess.run([nats_binary(), "-c", str(conf), "-t"], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen([nats_binary(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        asyncio.run(_log_in_as_each(port))
    finally:
        server.terminate()
        server.wait(10)


async def _log_in_as_each(port: int) -> None:
    for _ in range(100):  # the server is starting: wait for its port with a plain socket
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    for i, password in enumerate(PASSWORDS):
        nc = await nats.connect(f"nats://127.0.0.1:{port}", user=f"u{i}", password=password,
                                allow_reconnect=False, connect_timeout=5)
        await nc.close()
