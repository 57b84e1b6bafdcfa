"""Server-rendered HTML of the console: one layout, one function per page, no external assets.

Every piece of text goes through `T`, which redacts secret values and then HTML-escapes, so a
secret in a run log or an injected `<script>` in an agent's output is shown harmlessly or not
at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from koda.shared.messages import ApprovalRecord, Event

from .status import RunDetail, RunRow, ServiceRow, TaskRow

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
nav{background:#1d1d1f;padding:.6em 1.2em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}
main{padding:1em 1.5em;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}.ok{color:#0a7d28}.bad{color:#b00020}.muted{color:#777}
pre{background:#fff;border:1px solid #ddd;padding:.6em;overflow:auto;max-height:30em}
form.inline{display:inline}button{cursor:pointer}
.flash{background:#fff6d5;padding:.5em;border:1px solid #e6d27a}
"""


class Html:
    """The page builder for one request: the redactor and the session's CSRF token."""

    def __init__(self, redact: Callable[[str], str], csrf: str | None) -> None:
        self.redact = redact
        self.csrf = csrf

    def t(self, value: Any) -> str:
        return escape(self.redact("" if value is None else str(value)))

    def button(self, action: str, label: str, name: str = "") -> str:
        csrf = f'<input type="hidden" name="csrf" value="{escape(self.csrf or "")}">'
        return (f'<form class="inline" method="post" action="{escape(action)}">{csrf}'
                f'<button type="submit" name="{escape(name or label.lower())}">{escape(label)}'
                f"</button></form>")

    def page(self, title: str, body: str, flash: str | None = None) -> str:
        nav = "".join(f'<a href="{href}">{label}</a>' for href, label in (
            ("/", "Services"), ("/tasks", "Tasks"), ("/runs", "Runs"),
            ("/approvals", "Approvals"), ("/events", "Events")))
        logout = self.button("/logout", "Log out") if self.csrf else ""
        note = f'<p class="flash" role="status">{self.t(flash)}</p>' if flash else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>'
                f'{self.t(title)} · Koda</title><style>{CSS}</style></head><body><nav>{nav}'
                f'{logout}</nav><main><h1>{self.t(title)}</h1>{note}{body}</main></body></html>')


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(h: Html, headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str) -> str:
    head = "".join(f"<th>{escape(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if body else f'<p class="muted">{escape(empty)}</p>'


def login(h: Html, error: str | None = None) -> str:
    msg = f'<p class="bad">{h.t(error)}</p>' if error else ""
    return h.page("Log in", f'{msg}<form method="post" action="/login"><label>Console token '
                            f'<input type="password" name="token" autofocus></label> '
                            f'<button type="submit">Log in</button></form>')


def services(h: Html, rows: list[ServiceRow], pending: int, flash: str | None) -> str:
    body = table(h, ["service", "status", "instances", "last heartbeat"], (
        [h.t(r.name), f'<span class="{"ok" if r.status == "ok" else "bad"}">{h.t(r.status)}</span>',
         str(r.instances), "—" if r.age_s is None else f"{r.age_s:.1f} s ago"] for r in rows),
        "no services")
    body += f'<p><a href="/approvals">{pending} pending approval(s)</a></p>'
    return h.page("Services", body, flash)


def tasks(h: Html, rows: list[TaskRow], error: str | None, flash: str | None) -> str:
    out = f'<p class="bad">{h.t(error)}</p>' if error else ""

    def row(r: TaskRow) -> list[str]:
        last = r.last_run
        outcome = (f'<a href="/runs/{quote(last.run_id)}">{h.t(last.status)}</a> '
                   f'<span class="muted">{when(last.updated_at)}</span>') if last else "—"
        state = (f'<span class="bad">paused by {h.t(r.paused_by)}</span>' if r.paused_by
                 else ("enabled" if r.enabled else '<span class="muted">disabled</span>'))
        toggle = (h.button(f"/tasks/{quote(r.id)}/resume", "Resume") if r.paused_by
                  else h.button(f"/tasks/{quote(r.id)}/pause", "Pause"))
        return [h.t(r.id), h.t(r.cron or "manual"), state, when(r.next_fire), when(r.last_fire),
                outcome, h.t(", ".join(r.gated)),
                h.button(f"/tasks/{quote(r.id)}/run", "Run now", "run") + " " + toggle]

    out += table(h, ["task", "cron", "state", "next fire", "last fire", "last outcome", "gated",
                     ""], (row(r) for r in rows), "no tasks in tasks.json")
    return h.page("Tasks", out, flash)


def runs(h: Html, rows: list[RunRow]) -> str:
    return h.page("Runs", table(h, ["run", "task", "outcome", "when"], (
        [f'<a href="/runs/{quote(r.run_id)}">{h.t(r.run_id)}</a>', h.t(r.task), h.t(r.outcome),
         h.t(r.when)] for r in rows), "no run records yet"))


def run_detail(h: Html, detail: RunDetail, ledger: dict[str, Any] | None) -> str:
    parts = []
    if ledger:
        parts.append(f"<h2>Ledger</h2><pre>{h.t(json.dumps(ledger, indent=1, default=str))}</pre>")
    if detail.record is not None:
        parts.append(f"<h2>Record</h2><pre>{h.t(json.dumps(detail.record, indent=1))}</pre>")
    for name, text in detail.logs.items():
        parts.append(f"<h2>{h.t(name)}</h2><pre>{h.t(text)}</pre>")
    links = "".join(f'<li><a href="/runs/{quote(detail.run_id)}/artifacts/{quote(a)}">{h.t(a)}</a></li>'
                    for a in detail.artifacts)
    parts.append(f"<h2>Artifacts</h2><ul>{links}</ul>" if links
                 else '<p class="muted">no artifacts</p>')
    return h.page(f"Run {detail.run_id}", "".join(parts))


def approvals(h: Html, records: list[ApprovalRecord], flash: str | None,
              drafts: dict[str, str]) -> str:
    """Approvals, pending first; `drafts` maps an approval id to its viewable artifact path."""

    def row(r: ApprovalRecord) -> list[str]:
        actions = (h.button(f"/approvals/{quote(r.id)}/approve", "Approve") + " "
                   + h.button(f"/approvals/{quote(r.id)}/reject", "Reject")
                   if r.status == "pending" else
                   f"{h.t(r.status)} by {h.t(r.decided_by)} {when(r.decided_at)}")
        args = f"<pre>{h.t(json.dumps(r.args, indent=1, default=str))}</pre>" if r.args else ""
        artifact = (f'<a href="/drafts/{quote(drafts[r.id])}">{h.t(r.artifact)}</a>'
                    if r.id in drafts else h.t(r.artifact or ""))
        return [h.t(r.id), f'<span class="status">{h.t(r.status)}</span>', h.t(r.action),
                h.t(r.task), f"{h.t(r.reason)}{args}", artifact, when(r.expires_at), actions]

    ordered = sorted(records, key=lambda r: (r.status != "pending", r.created_at))
    return h.page("Approvals", table(
        h, ["id", "status", "action", "task", "why", "artifact", "expires", ""],
        (row(r) for r in ordered), "no approvals"), flash)


def events(h: Html, items: list[Event]) -> str:
    """The audit log, newest first."""
    severity = {"info": "", "warning": "bad", "error": "bad", "critical": "bad"}
    return h.page("Events", table(h, ["when", "event", "service", "task / run", "summary"], (
        [when(e.at), f'<span class="{severity.get(e.severity, "")}">{h.t(e.event)}</span>',
         h.t(e.service), h.t(" ".join(x for x in (e.task, e.run_id) if x)), h.t(e.summary)]
        for e in items), "no events yet"))
