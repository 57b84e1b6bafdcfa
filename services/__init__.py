"""The six Koda services, one folder each: `service.py` holds the loop, `__main__.py` starts it."""

from __future__ import annotations

import importlib
import os
import sys


#: nats-py imports aiohttp for a WebSocket transport Koda does not use (about 8 MB per process).
#: Only the gateway with a Discord token (discord.py runs on aiohttp) lets it load.
def _needs_aiohttp(name: str) -> bool:
    return name == "gateway" and bool(os.environ.get("KODA_DISCORD_TOKEN"))


def run(name: str) -> None:
    """Start service `name` in this process until it is stopped."""
    from koda.shared.settings import SERVICES

    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    if not _needs_aiohttp(name):
        sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    module = importlib.import_module(f"koda.services.{name}.service")
    from koda.shared.service import run_service

    run_service(module.SERVICE)
