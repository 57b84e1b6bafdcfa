"""Terminal output for `koda` commands: colour when it is a terminal, and a quiet exit when the
reader goes away (`koda status | head` ends without a traceback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36",
         "grey": "90", "bold": "1", "bright_blue": "94", "bright_magenta": "95",
         "bright_cyan": "96", "bright_green": "92"}
#: One colour per service, as `pm2 logs` gives each process its own.
SERVICE_COLOURS = {"nats": "grey", "scheduler": "cyan", "worker": "magenta", "actions": "yellow",
                   "scraper": "blue", "gateway": "green", "watchdog": "bright_blue",
                   "supervisord": "grey"}


def colour_on(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return (hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def paint(text: str, colour: str | None, on: bool | None = None) -> str:
    if not colour or not (colour_on() if on is None else on):
        return text
    return f"\x1b[{CODES.get(colour, '0')}m{text}\x1b[0m"


def outcome_colour(outcome: str) -> str:
    from koda.shared.runs_view import colour

    return {"ok": "green", "bad": "red", "warn": "yellow", "live": "bright_blue"}.get(
        colour(outcome), "grey")


def quiet_pipe(command: Callable[..., int]) -> Callable[..., int]:
    """Run a command; a closed stdout (`| head`) ends it quietly with the shell's code for SIGPIPE."""
    def run(*args: Any) -> int:
        try:
            code = command(*args)
            sys.stdout.flush()
            return code
        except BrokenPipeError:
            # Python would complain again flushing stdout at exit: point it at /dev/null first.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
    return run
