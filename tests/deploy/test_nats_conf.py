"""The shipped NATS config with compose's environment: NATS starts whatever characters the
operator's passwords hold (but `"` and `\\`), each service logs in with its password as written
in compose.env, and `koda run` under a user that may not queue runs says so."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from koda.shared.settings import SERVICES
from koda.stack import nats_binary
from tests.deploy.artifacts import EXAMPLE_ENV, NATS_CONF, compose_model
from tests.natsserver import free_port_block

#: Passwords NATS's config parser would read as something else if they were not quoted.
AWKWARD = ["123456", "true", "a,b;c}d[e]f", "with a space", "1e3", "#not-a-comment", "$NOT_A_VAR"]


def _connect(port: int, user: str, password: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.recv(4096)  # INFO
        connect = json.dumps({"user": user, "pass": password, "verbose": False})
        conn.sendall(f"CONNECT {connect}\r\nPING\r\n".encode())
        return conn.recv(4096).decode()


@pytest.mark.parametrize("password", AWKWARD)
def test_nats_starts_and_takes_a_password_nats_config_would_misread(
        password: str, tmp_path: Path) -> None:
    lines = EXAMPLE_ENV.read_text().splitlines()
    passwords = {s: f"{password}-{s}" if not password.isdigit() else f"{password}{i}"
                 for i, s in enumerate(SERVICES)}
    passwords["worker"] = password  # one exactly as given
    env_lines = [ln for ln in lines if not ln.startswith("KODA_NATS_PASSWORD_")]
    # compose.env lines are taken literally up to the end of the line (single quotes keep `$`).
    env_lines += [f"KODA_NATS_PASSWORD_{s.upper()}='{p}'" for s, p in passwords.items()]
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join(env_lines) + "\n")
    services = compose_model(env_file)["services"]

    def env_of(service: str) -> dict[str, str]:
        # `config` prints a `$` as `$$` (escaped for compose); the container gets one.
        env = services[service]["environment"]
        return {k: v.replace("$$", "$") for k, v in env.items() if v is not None}

    for name in SERVICES:
        assert env_of(name)["KODA_NATS_PASSWORD"] == passwords[name]
    nats_env = env_of("nats")
    with shipped_nats(tmp_path, nats_env) as port:
        assert "PONG" in _connect(port, "worker", password)
        assert "PONG" in _connect(port, "gateway", passwords["gateway"])
        assert "Authorization Violation" in _connect(port, "worker", password + "x")


@contextmanager
def shipped_nats(tmp_path: Path, env: dict[str, str]) -> Iterator[int]:
    """nats-server with volumes/nats/nats.conf (its store moved into tmp_path); yields its port."""
    port = free_port_block(2)
    conf = tmp_path / "nats.conf"
    conf.write_text(NATS_CONF.read_text().replace(
        'store_dir: "/koda/nats"', f'store_dir: "{tmp_path / "store"}"'))
    log = tmp_path / "nats.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([nats_binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port),
                                 "-m", str(port + 1)], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"nats-server refused the config: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_koda_run_as_a_user_that_may_not_queue_runs_names_the_violation(tmp_path: Path) -> None:
    passwords = {f"KODA_NATS_PASSWORD_{s.upper()}": f'"pw-{s}"' for s in SERVICES}
    koda = str(Path(sys.executable).parent / "koda")
    with shipped_nats(tmp_path, {"PATH": os.environ["PATH"], **passwords}) as port:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "KODA_HOME": str(tmp_path / "home"), "KODA_STATE_DIR": str(tmp_path / "state"),
               "KODA_NATS_URL": f"nats://127.0.0.1:{port}"}
        assert subprocess.run([koda, "init"], env=env, capture_output=True, timeout=60).returncode == 0
        tasks = tmp_path / "home" / "tasks.json"
        data = json.loads(tasks.read_text())
        data["tasks"] = [{"id": "probe", "prompt": "Say hello."}]
        tasks.write_text(json.dumps(data))
        # The gateway's user creates the streams first, as in compose.
        as_gateway = {**env, "KODA_NATS_USER": "gateway", "KODA_NATS_PASSWORD": "pw-gateway"}
        queued = subprocess.run([koda, "run", "probe"], env=as_gateway, capture_output=True,
                                text=True, timeout=60)
        assert queued.returncode == 0, queued.stderr
        as_scraper = {**env, "KODA_NATS_USER": "scraper", "KODA_NATS_PASSWORD": "pw-scraper"}
        refused = subprocess.run([koda, "run", "probe"], env=as_scraper, capture_output=True,
                                 text=True, timeout=60)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr, refused.stderr
    assert 'NATS refused the run request' in refused.stderr, refused.stderr
    assert 'permissions violation for publish to "koda.runs.probe"' in refused.stderr.lower()
    assert "scraper" in refused.stderr
