"""Structured JSON logs, one object per line, with secret values redacted."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .secrets import Redactor

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; extra fields given with `extra=` are kept."""

    def __init__(self, service: str, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.service = service
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                # An extra field never overrides the envelope (a "service" extra stays apart).
                entry[f"{key}_" if key in entry else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(entry, default=str))


def setup_logging(service: str, level: str = "INFO", redactor: Redactor | None = None) -> None:
    """Route every logger to stderr as JSON lines (supervisord or Docker collects them)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service, redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # nats-py logs every reconnect attempt at error level; our own code reports the state.
    logging.getLogger("nats").setLevel(logging.WARNING)
