"""The watchdog on a real supervisord stack: kills, broken config, crash loops."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from koda.shared.messages import Event
from tests.stack import Stack
from tests.watchdog.events import read_events

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("wd"), extra_env={
        "KODA_WATCHDOG_VERIFY_DELAY": "1",
        "KODA_CRASH_LOOP_RESTARTS": "3",
        "KODA_CRASH_LOOP_WINDOW": "120",
    })
    running.up()
    try:
        yield running
    finally:
        running.down()


def reports(stack: Stack, service: str) -> list[Event]:
    """The incident reports about one service: resolutions and alerts."""
    return [e for e in read_events(stack.client_url)
            if e.event in ("incident.resolved", "alert") and e.data.get("incident") == service]


def test_kill_9_is_detected_restarted_verified_and_reported_once(stack: Stack) -> None:
    old = stack.pid("worker")
    os.kill(old, signal.SIGKILL)
    report = stack.wait_for(lambda: reports(stack, "worker"), timeout=30)[0]
    assert report.event == "incident.resolved" and report.data["outcome"] == "healed"
    assert report.data["holds"] is True and report.data["class"] == "transient"
    # Detected within one heartbeat interval (1 s in this stack), healthy soon after.
    assert report.data["time_to_detect_s"] < 1.0
    assert report.data["time_to_healthy_s"] < 5.0
    assert stack.pid("worker") not in (0, old)
    assert stack.metric("watchdog", "koda_service_restarts_total", 'service="worker"') == 1.0
    assert stack.metric("watchdog", "koda_watchdog_incidents_total",
                        'class="transient",outcome="healed"') == 1.0
    time.sleep(2)  # a few more watchdog ticks and verify delays
    assert len(reports(stack, "worker")) == 1  # one report, not one per check


def _set_program_env(stack: Stack, program: str, extra: str) -> None:
    conf = stack.state / "supervisord.conf"
    text = conf.read_text()
    block = re.search(rf"\[program:{program}\]\n(.*?)\n\n", text, re.S)
    assert block
    patched = re.sub(r"(environment=.*)", rf"\1,{extra}", block.group(0), count=1)
    conf.write_text(text.replace(block.group(0), patched))
    stack.supervisorctl("reread")
    stack.supervisorctl("update", program)


def test_bad_config_is_classified_config_and_not_restarted_in_a_loop(stack: Stack) -> None:
    _set_program_env(stack, "actions", 'KODA_HEARTBEAT_INTERVAL="-1"')
    alert = stack.wait_for(lambda: reports(stack, "actions"), timeout=30)[0]
    assert alert.event == "alert" and alert.data["class"] == "config"
    assert alert.data["kind"] == "incident.config" and alert.severity == "critical"
    assert any("config error: KODA_HEARTBEAT_INTERVAL" in line
               for line in alert.data["evidence"]["log_tail"])
    stack.wait_for(lambda: stack.status()["actions"]["state"] == "STOPPED", timeout=10)
    restarts = stack.status()["actions"]["restarts"]
    assert restarts <= 2, "stopped at the first config exit, not after supervisord's retries"
    assert len(reports(stack, "actions")) == 1


def test_a_service_that_dies_on_start_is_a_crash_loop_escalated_once(stack: Stack) -> None:
    # The scraper's port taken by someone else: every start dies binding it.
    port = stack.port("scraper")
    old = stack.pid("scraper")
    os.kill(old, signal.SIGKILL)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        stack.wait_for(lambda: _try_bind(squatter, port), timeout=10, interval=0.01)
        squatter.listen()
        alerts = stack.wait_for(
            lambda: [r for r in reports(stack, "scraper") if r.event == "alert"], timeout=60)
        # Both rules fit a service that dies at start with exit 78 (PortInUse): "config" when the
        # watchdog reads that exit status, "crash_loop" when it first sees the restarts pile up
        # (which comes first is the scheduler's luck). Either escalates once and stops it.
        assert alerts[0].data["class"] in ("crash_loop", "config"), alerts[0].data
        stack.wait_for(lambda: stack.status()["scraper"]["state"] in ("STOPPED", "FATAL"), timeout=10)
    restarts = stack.status()["scraper"]["restarts"]
    # Stopped at once: after the crash-loop threshold (3), or earlier on its config exit.
    assert (3 if alerts[0].data["class"] == "crash_loop" else 1) <= restarts <= 4, restarts
    assert len([r for r in reports(stack, "scraper") if r.event == "alert"]) == 1
    # The service says so in one line (shared/service.py: PortInUse), and the alert carries it.
    tail = alerts[0].data["evidence"]["log_tail"]
    assert any(f"port {port}" in line and "is in use" in line for line in tail), tail


def _try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def test_restart_listener_file_is_outside_the_agent_home(stack: Stack) -> None:
    assert Path(stack.settings.restarts_file()).is_relative_to(stack.state)
