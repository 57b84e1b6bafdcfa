"""The watchdog's rules, on the evidence a failing service leaves behind."""

from __future__ import annotations

import pytest

from koda.services.watchdog.classify import classify, classify_text
from koda.services.watchdog.evidence import Evidence, restarts_in_window, tail


def evidence(exit_status: int | None = None, recent: int = 1, *lines: str) -> Evidence:
    return Evidence(service="worker", state="EXITED", exit_status=exit_status, restarts=recent,
                    recent_restarts=recent, log_tail=list(lines))


@pytest.mark.parametrize(("ev", "expected"), [
    (evidence(78, 1, '{"level": "error", "msg": "config error: KODA_PORT_BASE: not a number"}'),
     "config"),
    (evidence(1, 5, "Traceback (most recent call last):", "OSError: [Errno 98] in use"),
     "crash_loop"),
    (evidence(1, 1, '{"level": "error", "msg": "HTTP 401 Unauthorized from skool"}'), "auth"),
    (evidence(1, 1, '{"level": "error", "msg": "connection reset by peer"}'), "transient"),
    (evidence(-9, 1, '{"level": "info", "msg": "started"}'), "transient"),
    (evidence(1, 1, "Traceback (most recent call last):", "KeyError: 'x'"), "unknown"),
])
def test_rules_classify_a_dead_service(ev: Evidence, expected: str) -> None:
    assert classify(ev, crash_loop_restarts=3)[0] == expected


def test_a_config_exit_wins_over_a_restart_count() -> None:
    """A bad setting restarted by supervisord is still a config problem, not a crash loop."""
    assert classify(evidence(78, 9), crash_loop_restarts=3)[0] == "config"


def test_failure_text_of_a_job() -> None:
    assert classify_text("auth failure; refreshing members's login failed")[0] == "auth"
    assert classify_text("anything", exit_status=77)[0] == "auth"
    assert classify_text("tasks.json:14: tasks[2].cron: bad")[0] == "config"
    assert classify_text("something odd")[0] == "unknown"


def test_restart_window_and_log_tail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert restarts_in_window({"recent": [100.0, 200.0, 290.0]}, window=100, now=300.0) == 2
    log = tmp_path / "x.err.log"
    log.write_text("".join(f"line {i}\n" for i in range(500)))
    lines = tail(log)
    assert len(lines) == 50 and lines[-1] == "line 499"
    assert tail(tmp_path / "missing.log") == []
