"""supervisord's XML-RPC, for a watchdog running beside a local stack.

The client is blocking, so each call runs in a thread with a fresh proxy (proxies are not
thread-safe). In compose there is no supervisord: `available` is False and the watchdog works
from heartbeats alone.
"""

from __future__ import annotations

import asyncio
import xmlrpc.client
from typing import Any

from koda.shared.settings import KodaSettings
from koda.shared.supervision import supervisor_rpc


class Supervisor:
    """Read process states and start or stop programs of the local stack."""

    def __init__(self, settings: KodaSettings) -> None:
        self.settings = settings
        self.socket = settings.expanded_state() / "supervisor.sock"

    @property
    def available(self) -> bool:
        return self.socket.exists()

    async def _call(self, method: str, *args: Any) -> Any:
        def call() -> Any:
            target = supervisor_rpc(self.settings).supervisor
            return getattr(target, method)(*args)

        return await asyncio.to_thread(call)

    async def processes(self) -> dict[str, dict[str, Any]]:
        """Every program's info (statename, pid, exitstatus, start, ...), keyed by name."""
        try:
            infos = await self._call("getAllProcessInfo")
        except (OSError, xmlrpc.client.Error):
            return {}
        return {i["name"]: i for i in infos}

    async def start(self, name: str) -> bool:
        """Start without waiting; False if it was already starting or running."""
        try:
            return bool(await self._call("startProcess", name, False))
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" in fault.faultString:
                return False
            raise

    async def stop(self, name: str) -> bool:
        """Stop a program (also ends a BACKOFF loop); False if it was not running."""
        try:
            return bool(await self._call("stopProcess", name, False))
        except xmlrpc.client.Fault as fault:
            if "NOT_RUNNING" in fault.faultString:
                return False
            raise
