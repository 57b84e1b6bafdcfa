"""The web console: a Starlette app, served by uvicorn inside the gateway's loop (webserver.py).

Starlette is FastAPI's own foundation; FastAPI itself adds about 6 MB of RSS (its OpenAPI
models) for nothing these server-rendered pages use, and the idle stack has a 300 MB budget.

Pages (docs/console.md): services and health, tasks (schedule in words, run now, pause/resume,
enable/disable), runs (filters) and each run's live timeline (cancel, retry), approvals with
approve/reject and the action's outcome, costs, the audit log (events). Each page's live region
is refetched by the one script (static.py) with `X-Koda-Part: 1`. Every page needs a login (the
console token, then a session cookie); every state change needs the session's CSRF field and a
same-origin request (see auth.py). Text is redacted of secrets before it is rendered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from koda.shared import controls
from koda.shared.errors import KodaError

from . import pages, run_data, run_pages, status
from .auth import COOKIE, ConsoleAuth, GuessLimiter, same_origin
from .context import GatewayContext
from .events import recent_events

log = logging.getLogger(__name__)
Handler = Callable[[Request], Awaitable[Response]]
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
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

    async def viewer(request: Request) -> pages.Html:
        """The page builder of a logged-in request, or Refused(401)."""
        nonce = auth.session_nonce(request.cookies.get(COOKIE))
        if nonce is None and not bearer(request):
            raise Refused(401, "log in first")
        part = request.headers.get("x-koda-part") == "1"
        pending = 0 if part else len(await ctx.desk.store.pending())
        return pages.Html(ctx.redact, auth.csrf_for(nonce) if nonce else None,
                          request.url.path, part, pending)

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

    @route("/static/console.js")
    async def script(request: Request) -> Response:
        from .static import CONSOLE_JS

        return Response(CONSOLE_JS, media_type="text/javascript",
                        headers={**HEADERS, "Cache-Control": "max-age=300"})

    @route("/")
    async def home(request: Request) -> Response:
        h = await viewer(request)
        rows = await status.services(ctx.bus)
        pending = await ctx.desk.refresh()
        limits = await status.limits(ctx.bus)
        return html(pages.services(h, rows, len(pending), flash(request), limits,
                                   status.config_problems(ctx.home)))

    @route("/tasks")
    async def tasks(request: Request) -> Response:
        h = await viewer(request)
        rows, error = await status.tasks(ctx.bus, ctx.home)
        _, _, good_at = await controls.tasks_in_force(ctx.bus, ctx.home,
                                                      ctx.settings.expanded_state())
        latest: dict[str, run_data.RunSummary] = {}
        for summary in await run_data.summaries(ctx):  # running first, then newest
            latest.setdefault(summary.task, summary)
        return html(pages.tasks(h, rows, error, flash(request), good_at, latest))

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
            if verb in ("enable", "disable"):
                changed = await controls.set_enabled(ctx.bus, ctx.home, task, verb == "enable", who)
                return back("/tasks", f"{task} {verb}d" if changed else f"{task} was already {verb}d")
        except (controls.UnknownTask, controls.TaskEditError) as exc:
            return back("/tasks", str(exc))
        return PlainTextResponse("run, pause, resume, enable or disable", status_code=404,
                                 headers=HEADERS)

    @route("/runs")
    async def runs(request: Request) -> Response:
        h = await viewer(request)
        task = request.query_params.get("task") or None
        outcome = request.query_params.get("outcome") or None
        rows = await run_data.summaries(ctx)
        names = sorted({r.task for r in rows})
        from koda.shared.runs_view import filtered

        return html(run_pages.runs(h, filtered(rows, task, outcome), names, task, outcome))

    @route("/runs/{run_id}")
    async def run(request: Request) -> Response:
        h = await viewer(request)
        run_id = request.path_params["run_id"]
        if not status.RUN_ID.match(run_id):
            return html(h.page("Not found", f"<p>No run {h.t(run_id)}.</p>", every=None), 404)
        found = await run_data.summary(ctx, run_id)
        artifacts = status.run_artifacts(ctx.home, run_id)
        entries = run_data.entries(ctx, run_id)
        if found is None and artifacts is None and not entries:
            task = run_id.rsplit(".", 1)[0]
            parsed, _ = controls.load_tasks_or_none(ctx.home)
            if parsed is None or parsed.get(task) is None:
                return html(h.page("Not found", f"<p>No run {h.t(run_id)}.</p>", every=None), 404)
            # Just queued (a retry, "run now"): no worker has it yet. The page waits for it.
            found = run_data.RunSummary(run_id, task, "queued", live=True)
        found = found or run_data.RunSummary(run_id, run_id.split(".")[0], "unknown")
        approvals = [a for a in await ctx.desk.store.all() if a.run_id == run_id]
        outcomes = await run_data.action_outcomes(ctx.bus, approvals)
        return html(run_pages.run_page(h, found, entries, approvals, outcomes, artifacts or [],
                                       flash(request)))

    @route("/runs/{run_id}/{verb}", "POST")
    async def run_change(request: Request) -> Response:
        who = await changer(request)
        run_id, verb = request.path_params["run_id"], request.path_params["verb"]
        here = f"/runs/{quote(run_id)}"
        found = await run_data.summary(ctx, run_id) if status.RUN_ID.match(run_id) else None
        if found is None:
            return PlainTextResponse("no such run", status_code=404, headers=HEADERS)
        if verb == "cancel":
            await controls.cancel(ctx.bus, run_id, found.task, who)
            return back(here, f"asked the worker to cancel {run_id}")
        if verb == "retry":
            try:
                again = await controls.trigger(ctx.bus, ctx.home, found.task, who, trigger="retry")
            except controls.UnknownTask as exc:
                return back(here, str(exc))
            return back(f"/runs/{quote(again.run_id)}", f"retrying {found.task} as {again.run_id}")
        return PlainTextResponse("cancel or retry", status_code=404, headers=HEADERS)

    @route("/runs/{run_id}/artifacts/{name:path}")
    async def artifact(request: Request) -> Response:
        await viewer(request)
        path = status.artifact_path(ctx.home, request.path_params["run_id"],
                                    request.path_params["name"])
        if path is None:
            return PlainTextResponse("no such artifact", status_code=404, headers=HEADERS)
        return PlainTextResponse(ctx.redact(status.read_text(path)), headers=HEADERS)

    @route("/events")
    async def audit(request: Request) -> Response:
        h = await viewer(request)
        return html(pages.events(h, await recent_events(ctx.bus, 200)))

    @route("/approvals")
    async def approvals(request: Request) -> Response:
        h = await viewer(request)
        from .approval_pages import approvals as approvals_page

        records = await ctx.desk.store.all()
        drafts = {}
        for r in records:
            path = status.draft_file(ctx.home, r.artifact)
            if path is not None:
                drafts[r.id] = (path.relative_to(ctx.home.drafts.resolve()).as_posix(), path)
        outcomes = await run_data.action_outcomes(ctx.bus, records)
        return html(approvals_page(h, records, flash(request), drafts, outcomes))

    @route("/costs")
    async def costs(request: Request) -> Response:
        from .cost_pages import costs as costs_page

        h = await viewer(request)
        limits = await status.limits(ctx.bus)
        rows = await run_data.summaries(ctx)
        return html(costs_page(h, limits, rows, ctx.settings.spend_cap_day_usd,
                               ctx.settings.spend_cap_month_usd))

    @route("/drafts/{name:path}")
    async def draft(request: Request) -> Response:
        await viewer(request)
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
        note: str | None = None
        form = await request.form()
        args: dict[str, Any] | None = None
        raw_args = form.get("args")
        if isinstance(raw_args, str) and raw_args.strip() and verb == "approve":
            # An edit: the approver's arguments replace the agent's (audited in the record
            # and the approval.decided event).
            try:
                parsed = json.loads(raw_args)
            except ValueError as exc:
                return PlainTextResponse(f"args is not JSON: {exc}", status_code=400, headers=HEADERS)
            if not isinstance(parsed, dict):
                return PlainTextResponse("args must be a JSON object", status_code=400,
                                         headers=HEADERS)
            args = parsed
        if who == "console-api":
            # `koda approve|reject` decides through here, so only the gateway ever signs a
            # decision; it says so (`by=terminal`) and may carry a note.
            if form.get("by") == "terminal":
                who = "terminal"
            raw_note = form.get("note")
            note = raw_note if isinstance(raw_note, str) and raw_note else None
        decision = await ctx.desk.decide(approval_id, verb == "approve", who, note=note, args=args)
        if decision.changed and decision.record is not None:
            message = f"{decision.record.action} for {decision.record.task}: {decision.record.status}"
        else:
            message = f"nothing changed: {decision.reason}"
        if who in ("console-api", "terminal"):
            return PlainTextResponse(message, status_code=200 if decision.changed else 409,
                                     headers=HEADERS)
        return back("/approvals", message)

    return Starlette(routes=routes, exception_handlers={Refused: refused})
