"""The local stack's supervisord, as seen by the CLI and the watchdog: its XML-RPC socket and the
restart counts its event listener keeps (koda/restart_listener.py writes them)."""

from __future__ import annotations

import json
import xmlrpc.client
from typing import Any

from .settings import KodaSettings


def supervisor_rpc(settings: KodaSettings) -> Any:
    """An XML-RPC proxy to the stack's supervisord over its unix socket."""
    from supervisor.xmlrpc import SupervisorTransport

    sock = settings.expanded_state() / "supervisor.sock"
    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def read_restarts(settings: KodaSettings) -> dict[str, Any]:
    """Restarts per program, as the listener counted them; empty when there is no file yet."""
    try:
        data = json.loads(settings.restarts_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def process_status(settings: KodaSettings) -> dict[str, dict[str, Any]]:
    """supervisord's view of every program, keyed by name."""
    infos = supervisor_rpc(settings).supervisor.getAllProcessInfo()
    return {i["name"]: i for i in infos}
