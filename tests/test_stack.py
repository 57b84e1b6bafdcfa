"""The whole local stack under a real supervisord: up, healthy, restarts counted, clean stops."""

from __future__ import annotations

import json
import os
import signal

import pytest

from koda.shared.settings import SERVICES
from tests.stack import Stack

pytestmark = pytest.mark.slow


def test_stack_comes_up_healthy_and_status_shows_every_service(stack: Stack) -> None:
    status = stack.status()
    assert set(status) == {"nats", *SERVICES}
    for name, row in status.items():
        assert row["state"] == "RUNNING", (name, row, stack.logs(name))
        assert row["pid"] and row["uptime_s"] is not None
        if name != "nats":
            assert row["heartbeat_age_s"] is not None and row["heartbeat_age_s"] < 5
    assert stack.up_seconds < 10, "every service should heartbeat within 10 s of `koda up`"
    human = stack.koda("status").stdout
    assert all(name in human for name in SERVICES)


def test_every_service_serves_health_and_metrics(stack: Stack) -> None:
    for name in SERVICES:
        code, body = stack.http(name, "/healthz")
        assert code == 200, (name, body)
        assert json.loads(body)["service"] == name
        assert stack.metric(name, "koda_service_up", f'service="{name}"') == 1.0
    assert stack.koda("health", "worker").returncode == 0
    assert stack.koda("health", "no-such-service").returncode == 1


def test_kill_9_is_restarted_and_counted_once(stack: Stack) -> None:
    before = stack.metric("watchdog", "koda_service_restarts_total", 'service="worker"') or 0.0
    old_pid = stack.pid("worker")
    os.kill(old_pid, signal.SIGKILL)
    # Never trust `supervisorctl pid` while restarting: it prints 0. Wait for a new real pid.
    stack.wait_for(lambda: stack.status()["worker"]["state"] == "RUNNING"
                   and stack.pid("worker") not in (0, old_pid))
    stack.wait_for(lambda: (stack.status()["worker"]["heartbeat_age_s"] or 99) < 2)
    after = stack.metric("watchdog", "koda_service_restarts_total", 'service="worker"')
    assert after == before + 1
    assert stack.status()["worker"]["restarts"] == after


def test_sigterm_drains_and_exits_zero(stack: Stack) -> None:
    pid = stack.pid("actions")
    os.kill(pid, signal.SIGTERM)
    stack.wait_for(lambda: stack.pid("actions") not in (0, pid))
    supervisord_log = (stack.state / "logs" / "supervisord.log").read_text()
    assert "exited: actions (exit status 0; expected)" in supervisord_log, supervisord_log[-2000:]
    assert '"msg": "stopped"' in stack.logs("actions")


def test_down_stops_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    own = Stack(tmp_path)
    own.up()
    pids = [own.pid(name) for name in ("nats", *SERVICES)]
    own.down()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (own.state / "supervisor.sock").exists() or own.koda("status").returncode != 0
