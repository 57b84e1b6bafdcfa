"""Serving the console with uvicorn inside the gateway's own event loop, loaded at first use.

The port is bound at start (a busy port is reported then, not at the first visit), but
Starlette, the console and uvicorn's HTTP protocol are imported only when the first browser
connects: an idle gateway does not pay their ~5 MB of memory (docs/contracts.md, Memory). From
then on every connection gets uvicorn's own h11 protocol, as `uvicorn.Server` would create it;
uvicorn's signal handling is not used, the service owns SIGTERM and calls `stop`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
GRACE_SECONDS = 5.0


class ConsoleServer:
    """A listening socket whose connections are served by uvicorn once anyone connects."""

    def __init__(self, build_app: Callable[[], Any], host: str, port: int) -> None:
        self.host, self.port = host, port
        self._build_app = build_app
        self._server: asyncio.Server | None = None
        self._make: Callable[[], asyncio.Protocol] | None = None
        self._state: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loaded(self) -> bool:
        return self._make is not None

    async def start(self) -> None:
        """Bind and listen; raises OSError if the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(self._protocol, sock=sock, backlog=128)

    def _protocol(self) -> asyncio.Protocol:
        if self._make is None:
            self._make = self._load()
        return self._make()

    def _load(self) -> Callable[[], asyncio.Protocol]:
        started = time.monotonic()
        import uvicorn
        from uvicorn.server import ServerState

        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(self._build_app(), host=self.host, port=self.port, log_config=None,
                                access_log=False, lifespan="off", server_header=False,
                                http="h11", ws="none")
        config.load()
        state = self._state = ServerState()
        protocol = config.http_protocol_class
        loop = self._loop
        log.info("console loaded", extra={"seconds": round(time.monotonic() - started, 3)})
        return lambda: protocol(config=config, server_state=state, app_state={},  # type: ignore[call-arg]
                                _loop=loop)

    async def stop(self) -> None:
        """Stop listening, let requests in hand finish (bounded), close the connections."""
        if self._server is None:
            return
        self._server.close()
        state = self._state
        if state is not None:
            for connection in list(state.connections):
                connection.shutdown()
            deadline = time.monotonic() + GRACE_SECONDS
            while (state.connections or state.tasks) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for task in list(state.tasks):
                task.cancel()
        await self._server.wait_closed()
        self._server = None
