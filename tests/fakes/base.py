"""The frame every fake third-party service uses: a real HTTP server in a thread, a log of each
exchange (request and reply, for the tests and the spec checks), and a way to stall a reply so
a test can kill the client after the service acted but before the client heard back."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    url: str = ""

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"

    def json(self) -> Any:
        return self.body if not isinstance(self.body, (bytes, str)) else None


@dataclass
class Exchange:
    request: Request
    reply: Reply


class FakeService:
    """Subclasses implement `handle`; `stall(predicate)` holds matching replies until `release()`."""

    __test__ = False

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.lock = threading.RLock()
        self._stall: Callable[[Request], bool] | None = None
        self.stalled = threading.Event()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def stall(self, predicate: Callable[[Request], bool]) -> None:
        """Act on the next matching request, then hold its reply until `release()`."""
        self._stall, self._released = predicate, threading.Event()
        self.stalled.clear()

    def release(self) -> None:
        self._stall = None
        self._released.set()

    def requests(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self.lock:
            return [e.request for e in self.exchanges
                    if (method is None or e.request.method == method)
                    and (path is None or e.request.path == path)]

    def _serve(self, request: Request) -> Reply:
        with self.lock:
            reply = self.handle(request)
            self.exchanges.append(Exchange(request, reply))
        if self._stall is not None and self._stall(request):
            self.stalled.set()
            self._released.wait(60)
        return reply


def error(status: int, body: Any, **headers: str) -> Reply:
    return Reply(status, body, dict(headers))


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, split.path, dict(urllib.parse.parse_qsl(split.query)),
                          {k.lower(): v for k, v in self.headers.items()}, body, self.path)
        fake: FakeService = self.server.fake  # type: ignore[attr-defined]
        try:
            reply = fake._serve(request)
        except Exception as exc:  # a bug in the fake: say so loudly to the client
            reply = Reply(500, {"fake_error": f"{type(exc).__name__}: {exc}"})
        data = reply.body if isinstance(reply.body, bytes) else (
            reply.body.encode() if isinstance(reply.body, str) else
            b"" if reply.body is None else json.dumps(reply.body).encode())
        self.send_response(reply.status)
        if data or reply.status not in (204, 304):
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any
