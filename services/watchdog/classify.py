"""Failure classes, decided by rules first: exit codes, known error patterns, restart rate.

An unknown failure is handed to the agent (the self-heal skill) with the evidence attached.
"""

from __future__ import annotations

import re
from typing import Literal

from koda.shared.scripts import AUTH_FAILURE_EXIT
from koda.shared.service import EXIT_CONFIG

from .evidence import Evidence

FailureClass = Literal["config", "auth", "transient", "crash_loop", "resource", "limit", "unknown"]
#: A failed run's `data.cause` (set by the worker) -> its class: a rule already knows these.
CAUSE_CLASSES: dict[str, FailureClass] = {
    "config": "config", "missing_secret": "config", "no_handler": "config",
    "unknown_task": "config", "unapproved": "config", "resource": "resource", "auth": "auth"}

CONFIG_PATTERNS = re.compile(
    r"config error|ConfigError|ValidationError|\.json:\d+|invalid (config|settings)", re.I)
AUTH_PATTERNS = re.compile(
    r"\b(401|403)\b|unauthori[sz]ed|forbidden|login wall|session expired|expired cookie|"
    r"auth(entication)?[ _](fail|error)|exit code 77|not logged in|invalid api key|/login", re.I)
#: A config error the service logged and survived (it runs on the last good copy, saved across
#: restarts): never the reason it died, so never a reason to stop it.
SURVIVED_PATTERNS = re.compile(r"last good", re.I)
TRANSIENT_PATTERNS = re.compile(
    r"timed? ?out|timeout|connection (reset|refused|closed)|temporar|\b50[234]\b|"
    r"rate.?limit|\b429\b|disconnected|connection error|unable to connect|ECONNREFUSED|"
    r"ENOTFOUND|getaddrinfo|network error|overloaded|\b529\b", re.I)


def classify_text(text: str, exit_status: int | None = None) -> tuple[FailureClass, str]:
    """Classify an error message (a failed run or job, a log excerpt)."""
    if exit_status == EXIT_CONFIG or CONFIG_PATTERNS.search(text):
        return "config", "configuration error"
    if exit_status == AUTH_FAILURE_EXIT or AUTH_PATTERNS.search(text):
        return "auth", "credentials or session rejected"
    if TRANSIENT_PATTERNS.search(text):
        return "transient", "temporary failure"
    return "unknown", "no rule matched"


def classify(evidence: Evidence, crash_loop_restarts: int) -> tuple[FailureClass, str]:
    """Classify a dead or restarting service."""
    lines = [line for line in evidence.log_tail[-15:] if not SURVIVED_PATTERNS.search(line)]
    text = "\n".join(lines)
    if evidence.exit_status == EXIT_CONFIG:
        return "config", f"exited {EXIT_CONFIG} (configuration error)"
    if evidence.recent_restarts >= crash_loop_restarts:
        return "crash_loop", f"{evidence.recent_restarts} restarts in the window"
    cls, reason = classify_text(text, evidence.exit_status)
    if cls != "unknown":
        return cls, reason
    if not any("Traceback" in line or '"level": "error"' in line or '"level": "critical"' in line
               for line in lines):
        # Killed, or died once with nothing in its log: a restart is the fix.
        return "transient", "died without an error in its log"
    return "unknown", "an error no rule knows"
