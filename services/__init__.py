"""The six Koda services, one folder each: `service.py` holds the loop, `__main__.py` starts it."""

from __future__ import annotations

import importlib
import sys

#: Services that talk to Discord need aiohttp; the others block its import, which nats-py would
#: otherwise load for a WebSocket transport Koda does not use (about 8 MB per process).
_NEEDS_AIOHTTP = {"gateway"}


def run(name: str) -> None:
    """Start service `name` in this process until it is stopped."""
    from koda.shared.settings import SERVICES

    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    if name not in _NEEDS_AIOHTTP:
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    module = importlib.import_module(f"koda.services.{name}.service")
    from koda.shared.service import run_service

    run_service(module.SERVICE)
