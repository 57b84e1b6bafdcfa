"""Server-rendered HTML of the console: one layout, one function per page, no external assets.

Every piece of text goes through `T`, which redacts secret values and then HTML-escapes, so a
secret in a run log or an injected `<script>` in an agent's output is shown harmlessly or not
at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from koda.shared.messages import Event, LimitsRecord
from koda.shared.runs_view import RunSummary, colour, human_duration

from .status import ServiceRow, TaskRow

CSS = """
:root{--ink:#1c1f23;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9;--card:#fff;--ok:#15803d;
--okbg:#dcfce7;--bad:#b91c1c;--badbg:#fee2e2;--warn:#a16207;--warnbg:#fef3c7;--live:#1d4ed8;
--livebg:#dbeafe;--accent:#4f46e5}
*{box-sizing:border-box}
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:var(--ink);
background:var(--bg)}
header{background:#111827;color:#fff;display:flex;flex-wrap:wrap;align-items:center;gap:.2em 1em;
padding:.5em 1.2em}
header .brand{font-weight:700;letter-spacing:.02em;margin-right:.6em}
header nav{display:flex;flex-wrap:wrap;gap:.1em .2em;flex:1}
header nav a{color:#d1d5db;text-decoration:none;padding:.3em .6em;border-radius:6px}
header nav a.on{background:#374151;color:#fff}header nav a:hover{color:#fff}
header .count{background:#f59e0b;color:#111;border-radius:9px;padding:0 .45em;font-size:12px;
margin-left:.3em;font-weight:700}
header form button{background:none;border:1px solid #4b5563;color:#d1d5db}
main{padding:1em 1.2em 3em;max-width:1240px;margin:0 auto}
h1{font-size:1.35em;margin:.4em 0 .6em}h2{font-size:1.05em;margin:1.4em 0 .5em}
a{color:var(--accent)}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.8em 1em;
margin-bottom:1em}
.scroll{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:.45em .7em;text-align:left;vertical-align:top}
tr:last-child td{border-bottom:none}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
font-weight:600;background:#fafafa;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;border-radius:999px;padding:.05em .6em;font-size:12px;font-weight:600;
background:#f3f4f6;color:#374151;white-space:nowrap}
.badge.ok{background:var(--okbg);color:var(--ok)}.badge.bad{background:var(--badbg);color:var(--bad)}
.badge.warn{background:var(--warnbg);color:var(--warn)}
.badge.live{background:var(--livebg);color:var(--live)}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
.small{font-size:12px}.words{white-space:pre-wrap}
pre{background:#f9fafb;border:1px solid var(--line);border-radius:6px;padding:.6em;overflow:auto;
max-height:30em;white-space:pre-wrap;word-break:break-word;margin:.3em 0}
form.inline{display:inline}
button{cursor:pointer;font:inherit;border:1px solid #d1d5db;background:#fff;border-radius:6px;
padding:.2em .7em;color:var(--ink)}
button:hover{border-color:#9ca3af}button.primary{background:var(--accent);border-color:var(--accent);
color:#fff}button.danger{color:var(--bad);border-color:#fca5a5}
.doc{border-left:3px solid #c7d2fe;padding:.1em .9em;margin:.4em 0;max-height:26em;overflow:auto;
background:#fcfcff}.doc h3,.doc h4,.doc h5,.doc h6{margin:.5em 0 .3em}.doc p{margin:.4em 0}
.flash{background:var(--warnbg);padding:.5em .8em;border:1px solid #fcd34d;border-radius:8px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.7em;margin-bottom:1em}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.6em .9em}
.tile b{display:block;font-size:1.2em}.tile span{color:var(--muted);font-size:12px}
.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin-bottom:.8em}
select,input{font:inherit;padding:.2em .4em;border:1px solid #d1d5db;border-radius:6px;background:#fff}
.actions{white-space:nowrap}.actions form{margin-right:.2em}
.card,main li,main p{overflow-wrap:anywhere}.card .actions{white-space:normal}
ol.timeline{list-style:none;padding:0;margin:0;background:var(--card);border:1px solid var(--line);
border-radius:10px}
ol.timeline li{padding:.35em .9em;border-bottom:1px solid #f1f1f1}
ol.timeline li.step{background:#f3f4f6;font-size:1.02em}
ol.timeline li.say .words{white-space:pre-wrap;font-size:15px;margin:.15em 0 .1em;
border-left:3px solid #a5b4fc;padding-left:.6em}
ol.timeline li.result{padding-left:2.2em}
ol.timeline .args{margin:.2em 0 .1em 0;font-size:13px}ol.timeline .args code{white-space:pre-wrap;
word-break:break-word}
.badge.tool{background:#eef2ff;color:#3730a3}
ol.timeline li.turn{padding:.1em .9em;text-align:right}
ol.timeline details summary{cursor:pointer}
.hbars{display:grid;gap:.35em}.hbar{display:grid;grid-template-columns:minmax(6em,14em) 1fr 5em;
gap:.6em;align-items:center}.hbar .track{background:#f3f4f6;border-radius:4px;height:14px}
.hbar .fill{display:block;background:#6366f1;border-radius:4px;height:14px}
.hbar .value{text-align:right;font-variant-numeric:tabular-nums}
td:first-child b{white-space:nowrap}
@media (max-width:700px){main{padding:.6em .6em 3em}
.tiles{grid-template-columns:repeat(auto-fill,minmax(105px,1fr));gap:.4em}
.tile{padding:.4em .6em}.wide{display:none}
th,td{padding:.4em .45em}header{padding:.4em .6em;justify-content:space-between}
header nav{order:3;flex:0 0 100%;flex-wrap:nowrap;overflow-x:auto}header nav a{white-space:nowrap}
table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
table.stack tr:has(th){display:none}table.stack tr{border-bottom:1px solid var(--line);padding:.5em 0}
table.stack td{border:none;padding:.15em .8em}table.stack td.wide{display:none}
table.stack td:empty{display:none}}
"""
NAV = (("/", "Services"), ("/tasks", "Tasks"), ("/runs", "Runs"), ("/approvals", "Approvals"),
       ("/costs", "Costs"), ("/events", "Events"))


class Html:
    """The page builder for one request: the redactor, the session's CSRF token, the path (for
    the nav and the live region) and whether only the live region is wanted (`part`)."""

    def __init__(self, redact: Callable[[str], str], csrf: str | None, path: str = "/",
                 part: bool = False, pending: int = 0) -> None:
        self.redact = redact
        self.csrf = csrf
        self.path = path
        self.part = part
        self.pending = pending

    def t(self, value: Any) -> str:
        return escape(self.redact("" if value is None else str(value)))

    def button(self, action: str, label: str, name: str = "", cls: str = "") -> str:
        csrf = f'<input type="hidden" name="csrf" value="{escape(self.csrf or "")}">'
        klass = f' class="{escape(cls)}"' if cls else ""
        return (f'<form class="inline" method="post" action="{escape(action)}">{csrf}'
                f'<button type="submit"{klass} name="{escape(name or label.lower())}">'
                f"{escape(label)}</button></form>")

    def page(self, title: str, body: str, flash: str | None = None, every: float | None = 5.0,
             live_url: str | None = None) -> str:
        """The whole page, or with `part` only its live region (what the page script fetches
        every `every` seconds; None = the page does not update itself)."""
        if self.part:
            return body if every is not None else body + '<span data-stop="1"></span>'
        def link(href: str, label: str) -> str:
            on = ' class="on"' if (href == "/" and self.path == "/") or (
                href != "/" and self.path.startswith(href)) else ""
            count = (f'<span class="count">{self.pending}</span>'
                     if href == "/approvals" and self.pending else "")
            return f'<a href="{href}"{on}>{label}{count}</a>'
        nav = "".join(link(href, label) for href, label in NAV)
        logout = self.button("/logout", "Log out") if self.csrf else ""
        note = f'<p class="flash" role="status">{self.t(flash)}</p>' if flash else ""
        live = (f' data-live="{escape(live_url or self.path)}" data-every="{every:g}"'
                if every is not None and self.csrf is not None else "")
        script = '<script src="/static/console.js" defer></script>' if live else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                f'<title>{self.t(title)} · Koda</title><style>{CSS}</style>{script}</head><body>'
                f'<header><span class="brand">Koda</span><nav>{nav}</nav>{logout}</header>'
                f'<main><h1>{self.t(title)}</h1>{note}<div id="live"{live}>{body}</div></main>'
                f"</body></html>")


def badge(h: Html, text: str, cls: str) -> str:
    return f'<span class="badge {escape(cls)}">{h.t(text)}</span>'


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """`3m 05s ago`, with the exact time on hover."""
    if value is None:
        return "—"
    now = now or datetime.now(UTC)
    seconds = (now - value).total_seconds()
    text = (f"in {human_duration(-seconds)}" if seconds < 0 else f"{human_duration(seconds)} ago")
    return f'<span title="{when(value)}">{text}</span>'


def table(h: Html, headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str,
          classes: Iterable[str] | None = None, stack: bool = False) -> str:
    """A table in a horizontally scrolling card; header names ending in `#` are numeric, and
    `classes` (one per column) may mark columns `wide` (hidden on a phone). A `stack` table
    shows each row as a card on a phone instead of scrolling sideways."""
    heads = list(headers)
    cls = list(classes) if classes is not None else [""] * len(heads)
    cls = [(c + (" num" if name.endswith("#") else "")).strip() for c, name in zip(cls, heads, strict=True)]
    def cell(tag: str, c: str, text: str) -> str:
        return f'<{tag} class="{c}">{text}</{tag}>' if c else f"<{tag}>{text}</{tag}>"
    head = "".join(cell("th", c, escape(x.rstrip("#"))) for c, x in zip(cls, heads, strict=True))
    body = "".join("<tr>" + "".join(cell("td", c, v) for c, v in zip(cls, row, strict=True)) + "</tr>"
                   for row in rows)
    klass = ' class="stack"' if stack else ""
    return (f'<div class="scroll"><table{klass}><tr>{head}</tr>{body}</table></div>' if body
            else f'<p class="muted">{escape(empty)}</p>')


def login(h: Html, error: str | None = None) -> str:
    msg = f'<p class="bad">{h.t(error)}</p>' if error else ""
    return h.page("Log in", f'{msg}<form method="post" action="/login"><label>Console token '
                            f'<input type="password" name="token" autofocus></label> '
                            f'<button type="submit">Log in</button></form>')


def services(h: Html, rows: list[ServiceRow], pending: int, flash: str | None,
             limits: LimitsRecord | None = None, config: list[str] | None = None,
             now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    up = sum(1 for r in rows if r.status == "ok")
    pause = limits.pause_until if limits and limits.pause_until and limits.pause_until > now else None
    tiles = [
        (f'<b class="{"ok" if up == len(rows) else "bad"}">{up} / {len(rows)}</b>', "services up"),
        (f'<b><a href="/approvals">{pending}</a></b>', "approvals waiting"),
        (f'<b class="warn">until {pause:%H:%M} UTC</b>' if pause else '<b class="ok">none</b>',
         "rate-limit pause" + (f": {h.t(limits.pause_reason)}" if pause and limits else "")),
        (f'<b class="{"bad" if config else "ok"}">{len(config) if config else "ok"}</b>',
         "config problems" if config else "config health")]
    body = '<div class="tiles">' + "".join(
        f'<div class="tile">{v}<span>{k}</span></div>' for v, k in tiles) + "</div>"

    def row(r: ServiceRow) -> list[str]:
        state = badge(h, r.status, "ok" if r.status == "ok" else "warn" if r.status == "degraded"
                      else "bad")
        beat = "—" if r.age_s is None or r.name == "nats" else f"{r.age_s:.1f}s ago"
        return [f"<b>{h.t(r.name)}</b>", state, "—" if r.pid is None else str(r.pid),
                human_duration(r.uptime_s), "—" if r.restarts is None else str(r.restarts), beat,
                f'<span class="small muted">{h.t(r.detail)}</span>']
    body += table(h, ["service", "status", "pid#", "uptime#", "restarts#", "heartbeat#", "detail"],
                  (row(r) for r in rows), "no services", ["", "", "wide", "", "", "", "wide"])
    if config:
        body += "<h2>Config problems</h2><ul>" + "".join(
            f'<li class="bad">{h.t(p)}</li>' for p in config) + "</ul>"
    return h.page("Services", body, flash)


def tasks(h: Html, rows: list[TaskRow], error: str | None, flash: str | None,
          last_good_at: datetime | None = None, latest: dict[str, RunSummary] | None = None) -> str:
    """`latest` is each task's newest run (records and ledger); without it, the ledger's."""
    out = ""
    if error:
        kept = (f"The last good version (saved {when(last_good_at)}) stays in force; its tasks are "
                "below." if rows else "No good version is known: nothing is scheduled.")
        out = (f'<div class="card"><b class="bad">tasks.json has problems</b><pre>{h.t(error)}</pre>'
               f"<p>{kept}</p></div>")

    def row(r: TaskRow) -> list[str]:
        last = r.last_run
        newest = (latest or {}).get(r.id)
        if newest is not None:
            outcome = (f'<a href="/runs/{quote(newest.run_id)}">'
                       f"{badge(h, newest.outcome, colour(newest.outcome))}</a> <span class=\"small "
                       f'muted">{ago(newest.started_at or newest.finished_at)}</span>')
        elif last is not None:
            outcome = (f'<a href="/runs/{quote(last.run_id)}">{badge(h, last.status, colour(last.status))}'
                       f'</a> <span class="small muted">{ago(last.updated_at)}</span>')
        else:
            outcome = '<span class="muted">never ran</span>'
        if r.paused_by:
            state = badge(h, "paused", "warn") + (
                f'<div class="small muted">by {h.t(r.paused_by)}'
                f'{": " + h.t(r.pause_reason) if r.pause_reason else ""}</div>')
        else:
            state = badge(h, "enabled", "ok") if r.enabled else badge(h, "disabled", "")
        base = f"/tasks/{quote(r.id)}"
        buttons = [h.button(f"{base}/run", "Run now", "run", "primary"),
                   h.button(f"{base}/resume", "Resume") if r.paused_by
                   else h.button(f"{base}/pause", "Pause"),
                   h.button(f"{base}/disable", "Disable") if r.enabled
                   else h.button(f"{base}/enable", "Enable")]
        schedule = (f'{h.t(r.schedule)}<div class="small muted">{h.t(r.cron or "")} · '
                    f"{h.t(r.zone)}</div>") if r.cron else '<span class="muted">manual only</span>'
        nxt = "—"
        if r.next_fire and r.enabled and not r.paused_by:
            local = r.next_fire.astimezone(ZoneInfo(r.zone))
            nxt = f'{ago(r.next_fire)}<div class="small muted">{local:%a %H:%M %Z}</div>'
        return [f"<b>{h.t(r.id)}</b>", state, schedule, nxt, outcome, admission(r),
                h.t(", ".join(r.gated)) or '<span class="muted">—</span>',
                '<span class="actions">' + " ".join(buttons) + "</span>"]

    def admission(r: TaskRow) -> str:
        """The priority and the worker's last admission decision, with its reason."""
        a = r.admission
        if a is None:
            return h.t(r.priority)
        tone = {"run": "ok", "reduce": "warn", "wait": "warn", "skip": "warn"}.get(a.decision, "")
        until = f" until {a.wait_until.astimezone(UTC):%H:%M} UTC" if a.wait_until else ""
        return (f"{h.t(r.priority)} {badge(h, a.decision, tone)}{h.t(until)}"
                f'<div class="small muted">{h.t(a.reason)} · {ago(a.at)}</div>')

    out += table(h, ["task", "state", "schedule", "next fire", "last run", "priority · admission",
                     "gated", ""],
                 (row(r) for r in rows), "no tasks in tasks.json",
                 ["", "", "", "", "", "wide", "wide", ""], stack=True)
    return h.page("Tasks", out, flash, 10.0)


def events(h: Html, items: list[Event]) -> str:
    """The audit log, newest first."""
    severity = {"info": "", "warning": "warn", "error": "bad", "critical": "bad"}

    def row(e: Event) -> list[str]:
        link = (f'<a href="/runs/{quote(e.run_id)}">{h.t(e.run_id)}</a>' if e.run_id
                else h.t(e.task or ""))
        return [ago(e.at), badge(h, e.event, severity.get(e.severity, "")), h.t(e.service), link,
                h.t(e.summary)]
    return h.page("Events", table(h, ["when", "event", "service", "run", "summary"],
                                  (row(e) for e in items), "no events yet",
                                  ["", "", "wide", "wide", ""]))
