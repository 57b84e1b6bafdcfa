"""The web console: a Starlette app, served by uvicorn inside the gateway's loop (webserver.py).

Starlette is FastAPI's own foundation; FastAPI itself adds about 6 MB of RSS (its OpenAPI
models) for nothing these server-rendered pages use, and the idle stack has a 300 MB budget.

Pages: services and health, tasks (next fire, last outcome, run now, pause/resume), runs with
their logs and artifacts, approvals with approve/reject, the audit log (events). Every page
needs a login (the console token, then a session cookie); every state change needs the session's
CSRF field and a same-origin request (see auth.py). Text is redacted of secrets before it is
rendered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from nats.js.errors import KeyNotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from koda.shared.bus import Bus
from koda.shared.errors import KodaError

from . import controls, pages, status
from .auth import COOKIE, ConsoleAuth, GuessLimiter, same_origin
from .context import GatewayContext
from .events import recent_events

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(KodaError):
    """A request without a valid login, or a state change that failed the CSRF checks."""

    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code, self.reason = status_code, reason


def build_app(ctx: GatewayContext, auth: ConsoleAuth, guesses: GuessLimiter | None = None) -> Starlette:
    routes: list[Route] = []
    limiter = guesses or GuessLimiter()

    def client(request: Request) -> str | None:
        return request.client.host if request.client else None

    def wrong_credential(request: Request) -> bool:
        """A refused request that carried a credential: a guess, answered late."""
        return bool(request.headers.get("authorization") or request.cookies.get(COOKIE))

    def route(path: str, method: str = "GET") -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            routes.append(Route(path, handler, methods=[method]))
            return handler
        return register

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

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        if exc.status_code == 401:
            if wrong_credential(request):
                await limiter.wrong(client(request))
            body = pages.login(pages.Html(ctx.redact, None), exc.reason)
            return HTMLResponse(body, status_code=401, headers=HEADERS)
        return PlainTextResponse(exc.reason, status_code=exc.status_code, headers=HEADERS)

    def html(body: str, code: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status_code=code, headers=HEADERS)

    def back(path: str, message: str) -> RedirectResponse:
        return RedirectResponse(f"{path}?msg={quote(ctx.redact(message))}", status_code=303,
                                headers=HEADERS)

    def flash(request: Request) -> str | None:
        return request.query_params.get("msg")

    @route("/login")
    async def login_page(request: Request) -> Response:
        return html(pages.login(pages.Html(ctx.redact, None)))

    @route("/login", "POST")
    async def login(request: Request) -> Response:
        if not same_origin(request.headers.get("origin"), request.headers.get("host")):
            raise Refused(403, "cross-site request refused")
        form = await request.form()
        token = form.get("token")
        if not auth.token_ok(token if isinstance(token, str) else None):
            await limiter.wrong(client(request))
            return html(pages.login(pages.Html(ctx.redact, None), "wrong token"), 401)
        response = RedirectResponse("/", status_code=303, headers=HEADERS)
        response.set_cookie(COOKIE, auth.new_session(), httponly=True, samesite="strict",
                            path="/", max_age=7 * 86400)
        return response

    @route("/logout", "POST")
    async def logout(request: Request) -> Response:
        await changer(request)
        response = RedirectResponse("/login", status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    @route("/")
    async def home(request: Request) -> Response:
        h = viewer(request)
        rows = await status.services(ctx.bus)
        pending = await ctx.desk.refresh()
        return html(pages.services(h, rows, len(pending), flash(request)))

    @route("/tasks")
    async def tasks(request: Request) -> Response:
        h = viewer(request)
        rows, error = await status.tasks(ctx.bus, ctx.home)
        return html(pages.tasks(h, rows, error, flash(request)))

    @route("/tasks/{task}/{verb}", "POST")
    async def task_change(request: Request) -> Response:
        who = await changer(request)
        task, verb = request.path_params["task"], request.path_params["verb"]
        try:
            if verb == "run":
                run = await controls.trigger(ctx.bus, ctx.home, task, who)
                return back("/tasks", f"queued {task} as run {run.run_id}")
            if verb == "pause":
                await controls.pause(ctx.bus, ctx.home, task, who, "paused from the console")
                return back("/tasks", f"paused {task}")
            if verb == "resume":
                done = await controls.resume(ctx.bus, task, who)
                return back("/tasks", f"resumed {task}" if done else f"{task} was not paused")
        except controls.UnknownTask as exc:
            return back("/tasks", str(exc))
        return PlainTextResponse("run, pause or resume", status_code=404, headers=HEADERS)

    @route("/runs")
    async def runs(request: Request) -> Response:
        h = viewer(request)
        return html(pages.runs(h, status.runs(ctx.home)))

    @route("/runs/{run_id}")
    async def run(request: Request) -> Response:
        h = viewer(request)
        run_id = request.path_params["run_id"]
        detail = status.run_detail(ctx.home, run_id)
        ledger = await _ledger(ctx.bus, run_id)
        if detail is None and ledger is None:
            return html(h.page("Not found", f"<p>No run {h.t(run_id)}.</p>"), 404)
        detail = detail or status.RunDetail(run_id, None, {}, [])
        return html(pages.run_detail(h, detail, ledger))

    @route("/runs/{run_id}/artifacts/{name:path}")
    async def artifact(request: Request) -> Response:
        viewer(request)
        path = status.artifact_path(ctx.home, request.path_params["run_id"],
                                    request.path_params["name"])
        if path is None:
            return PlainTextResponse("no such artifact", status_code=404, headers=HEADERS)
        return PlainTextResponse(ctx.redact(status.read_text(path)), headers=HEADERS)

    @route("/events")
    async def audit(request: Request) -> Response:
        h = viewer(request)
        return html(pages.events(h, await recent_events(ctx.bus, 200)))

    @route("/approvals")
    async def approvals(request: Request) -> Response:
        h = viewer(request)
        records = await ctx.desk.store.all()
        drafts = {}
        for r in records:
            path = status.draft_file(ctx.home, r.artifact)
            if path is not None:
                drafts[r.id] = path.relative_to(ctx.home.drafts.resolve()).as_posix()
        return html(pages.approvals(h, records, flash(request), drafts))

    @route("/drafts/{name:path}")
    async def draft(request: Request) -> Response:
        viewer(request)
        path = status.draft_file(ctx.home, f"data/drafts/{request.path_params['name']}")
        if path is None:
            return PlainTextResponse("no such draft", status_code=404, headers=HEADERS)
        return PlainTextResponse(ctx.redact(status.read_text(path)), headers=HEADERS)

    @route("/approvals/{approval_id}/{verb}", "POST")
    async def decide(request: Request) -> Response:
        who = await changer(request)
        approval_id, verb = request.path_params["approval_id"], request.path_params["verb"]
        if verb not in ("approve", "reject"):
            return PlainTextResponse("approve or reject", status_code=404, headers=HEADERS)
        decision = await ctx.desk.decide(approval_id, verb == "approve", who)
        if decision.changed and decision.record is not None:
            message = f"{decision.record.action} for {decision.record.task}: {decision.record.status}"
        else:
            message = f"nothing changed: {decision.reason}"
        return back("/approvals", message)

    return Starlette(routes=routes, exception_handlers={Refused: refused})


async def _ledger(bus: Bus, run_id: str) -> dict[str, Any] | None:
    try:
        entry = await bus.kv["runs"].get(run_id)
    except (KeyNotFoundError, ValueError):
        return None
    return json.loads(entry.value) if entry.value else None
