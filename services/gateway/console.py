"""The web console: a FastAPI app served by uvicorn inside the gateway's event loop.

Pages: services and health, tasks (next fire, last outcome, run now, pause/resume), runs with
their logs and artifacts, approvals with approve/reject. Every page needs a login (the console
token, then a session cookie); every state change needs the session's CSRF field and a
same-origin request (see auth.py). Text is redacted of secrets before it is rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from nats.js.errors import KeyNotFoundError

from koda.shared.bus import Bus

from . import controls, pages, status
from .auth import COOKIE, ConsoleAuth, same_origin
from .context import GatewayContext

log = logging.getLogger(__name__)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request without a valid login, or a state change that failed the CSRF checks."""

    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code, self.reason = status_code, reason


def build_app(ctx: GatewayContext, auth: ConsoleAuth) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def bearer(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.startswith("Bearer ") and auth.token_ok(header[7:].strip())

    def viewer(request: Request) -> pages.Html:
        """The page builder of a logged-in request, or Refused(401)."""
        nonce = auth.session_nonce(request.cookies.get(COOKIE))
        if nonce is None and not bearer(request):
            raise Refused(401, "log in first")
        return pages.Html(ctx.redact, auth.csrf_for(nonce) if nonce else None)

    async def changer(request: Request) -> str:
        """Who is making a state change, after the login, CSRF and origin checks."""
        if bearer(request):
            return "console-api"
        nonce = auth.session_nonce(request.cookies.get(COOKIE))
        if nonce is None:
            raise Refused(401, "log in first")
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise Refused(403, "cross-site request refused")
        form = await request.form()
        csrf = form.get("csrf")
        if not auth.csrf_ok(nonce, csrf if isinstance(csrf, str) else None):
            raise Refused(403, "missing or wrong CSRF token; reload the page")
        return "console"

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        if exc.status_code == 401:
            body = pages.login(pages.Html(ctx.redact, None), exc.reason)
            return HTMLResponse(body, status_code=401, headers=HEADERS)
        return PlainTextResponse(exc.reason, status_code=exc.status_code, headers=HEADERS)

    def html(body: str, code: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=code, headers=HEADERS)

    def back(path: str, message: str) -> RedirectResponse:
        return RedirectResponse(f"{path}?msg={quote(ctx.redact(message))}", status_code=303,
                                headers=HEADERS)

    @app.get("/login")
    async def login_page() -> HTMLResponse:
        return html(pages.login(pages.Html(ctx.redact, None)))

    @app.post("/login")
    async def login(request: Request) -> Response:
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise Refused(403, "cross-site request refused")
        form = await request.form()
        token = form.get("token")
        if not auth.token_ok(token if isinstance(token, str) else None):
            log.warning("console login refused", extra={"client": request.client.host
                                                        if request.client else None})
            return html(pages.login(pages.Html(ctx.redact, None), "wrong token"), 401)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, auth.new_session(), httponly=True, samesite="strict",
                            path="/", max_age=7 * 86400)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await changer(request)
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/")
    async def home(request: Request, msg: str | None = None) -> HTMLResponse:
        h = viewer(request)
        rows = await status.services(ctx.bus)
        pending = await ctx.desk.refresh()
        return html(pages.services(h, rows, len(pending), msg))

    @app.get("/tasks")
    async def tasks(request: Request, msg: str | None = None) -> HTMLResponse:
        h = viewer(request)
        rows, error = await status.tasks(ctx.bus, ctx.home)
        return html(pages.tasks(h, rows, error, msg))

    async def task_change(request: Request, task: str,
                          change: Callable[[str], Awaitable[str]]) -> Response:
        who = await changer(request)
        try:
            return back("/tasks", await change(who))
        except controls.UnknownTask as exc:
            return back("/tasks", str(exc))

    @app.post("/tasks/{task}/run")
    async def run_task(request: Request, task: str) -> Response:
        async def go(who: str) -> str:
            run = await controls.trigger(ctx.bus, ctx.home, task, who)
            return f"queued {task} as run {run.run_id}"
        return await task_change(request, task, go)

    @app.post("/tasks/{task}/pause")
    async def pause_task(request: Request, task: str) -> Response:
        async def go(who: str) -> str:
            await controls.pause(ctx.bus, ctx.home, task, who, "paused from the console")
            return f"paused {task}"
        return await task_change(request, task, go)

    @app.post("/tasks/{task}/resume")
    async def resume_task(request: Request, task: str) -> Response:
        async def go(who: str) -> str:
            done = await controls.resume(ctx.bus, task, who)
            return f"resumed {task}" if done else f"{task} was not paused"
        return await task_change(request, task, go)

    @app.get("/runs")
    async def runs(request: Request) -> HTMLResponse:
        h = viewer(request)
        return html(pages.runs(h, status.runs(ctx.home)))

    @app.get("/runs/{run_id}")
    async def run(request: Request, run_id: str) -> HTMLResponse:
        h = viewer(request)
        detail = status.run_detail(ctx.home, run_id)
        ledger = await _ledger(ctx.bus, run_id)
        if detail is None and ledger is None:
            return html(h.page("Not found", f"<p>No run {h.t(run_id)}.</p>"), 404)
        detail = detail or status.RunDetail(run_id, None, {}, [])
        return html(pages.run_detail(h, detail, ledger))

    @app.get("/runs/{run_id}/artifacts/{name:path}")
    async def artifact(request: Request, run_id: str, name: str) -> Response:
        viewer(request)
        path = status.artifact_path(ctx.home, run_id, name)
        if path is None:
            return PlainTextResponse("no such artifact", status_code=404, headers=HEADERS)
        return PlainTextResponse(ctx.redact(status.read_text(path)), headers=HEADERS)

    @app.get("/approvals")
    async def approvals(request: Request, msg: str | None = None) -> HTMLResponse:
        h = viewer(request)
        return html(pages.approvals(h, await ctx.desk.store.all(), msg))

    @app.post("/approvals/{approval_id}/{verb}")
    async def decide(request: Request, approval_id: str, verb: str) -> Response:
        who = await changer(request)
        if verb not in ("approve", "reject"):
            return PlainTextResponse("approve or reject", status_code=404, headers=HEADERS)
        decision = await ctx.desk.decide(approval_id, verb == "approve", who)
        if decision.changed and decision.record is not None:
            message = f"{decision.record.action} for {decision.record.task}: {decision.record.status}"
        else:
            message = f"nothing changed: {decision.reason}"
        return back("/approvals", message)

    return app


async def _ledger(bus: Bus, run_id: str) -> dict[str, Any] | None:
    try:
        entry = await bus.kv["runs"].get(run_id)
    except (KeyNotFoundError, ValueError):
        return None
    return json.loads(entry.value) if entry.value else None


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the service owns SIGTERM and stops us itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ConsoleServer:
    """Binds the console's port (so a busy port is an error we report, not uvicorn's exit) and
    serves the app until `stop`."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server = _EmbeddedServer(uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
            server_header=False))
        self._task: Any = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        sock.setblocking(False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except Exception:
            log.exception("console stopped with an error")
