"""Start a service by name: the one place a service name becomes its module.

Kept free of heavy imports on purpose: the aiohttp block below only saves memory if it runs
before anything imports nats-py.
"""

from __future__ import annotations

import importlib
import os
import sys


def _needs_aiohttp(name: str) -> bool:
    """nats-py imports aiohttp for a WebSocket transport Koda does not use (about 8 MB per
    process); only the gateway with a Discord token (discord.py runs on aiohttp) lets it load."""
    return name == "gateway" and bool(os.environ.get("KODA_DISCORD_TOKEN"))


def run_named(name: str) -> None:
    """Run service `name` in this process until it is stopped (`koda service NAME`,
    `python -m koda.services.NAME`).

    The module `koda.services.<name>.service` is imported by name, so shared/ never depends on a
    service statically.
    """
    from koda.shared.settings import SERVICES

    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    if not _needs_aiohttp(name):
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    module = importlib.import_module(f"koda.services.{name}.service")
    from koda.shared.service import run_service

    run_service(module.SERVICE)
