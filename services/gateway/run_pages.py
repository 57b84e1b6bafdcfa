"""The console's Runs page and a run's own page: its summary, cancel / retry, the approvals it
raised with their outcome, its artifacts, and the timeline of what the agent did
(shared/transcript.py), which follows the run live while it goes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from koda.shared.messages import ApprovalRecord
from koda.shared.runs_view import (
    LIVE,
    RunSummary,
    colour,
    human_cost,
    human_duration,
    human_tokens,
)
from koda.shared.transcript import turn_costs

from .pages import Html, ago, badge, table

OUTCOMES = ("live", "done", "failed", "turn_cap", "cancelled", "refused")
#: Tool output and input longer than this are folded into a <details>.
SHOWN_CHARS = 400


def runs(h: Html, rows: list[RunSummary], tasks: list[str], task: str | None,
         outcome: str | None) -> str:
    def option(value: str, chosen: str | None, label: str | None = None) -> str:
        sel = " selected" if value == (chosen or "") else ""
        return f'<option value="{h.t(value)}"{sel}>{h.t(label or value)}</option>'

    filters = (
        '<form class="filters" method="get" action="/runs">'
        '<label>Task <select name="task">'
        + option("", task, "all tasks") + "".join(option(t, task) for t in tasks) + "</select></label>"
        '<label>Outcome <select name="outcome">' + option("", outcome, "any")
        + "".join(option(o, outcome, "running" if o == "live" else o) for o in OUTCOMES)
        + '</select></label><button type="submit">Filter</button></form>')
    live = sum(1 for r in rows if r.live)
    spent = sum(r.cost_usd or 0 for r in rows)
    tiles = (f'<div class="tiles"><div class="tile"><b>{live}</b><span>running or waiting</span></div>'
             f'<div class="tile"><b>{len(rows)}</b><span>runs shown</span></div>'
             f'<div class="tile"><b>{human_cost(spent)}</b><span>spent by these runs</span></div></div>')

    def row(r: RunSummary) -> list[str]:
        task, dot, stamp = r.run_id.rpartition(".")
        shown = f"{h.t(task)}{dot}<wbr>{h.t(stamp)}" if dot else h.t(r.run_id)
        link = f'<a href="/runs/{quote(r.run_id)}">{shown}</a>'
        state = badge(h, "running" if r.outcome == "running" else r.outcome, colour(r.outcome))
        return [state, link, h.t(r.task), h.t(r.trigger or "—"), ago(r.started_at or r.finished_at),
                human_duration(r.duration_s), "—" if r.turns is None else str(r.turns),
                human_cost(r.cost_usd), human_tokens(r.tokens)]

    body = filters + tiles + table(
        h, ["outcome", "run", "task", "trigger", "started", "duration#", "turns#", "cost#", "tokens#"],
        (row(r) for r in rows), "no runs match" if task or outcome else "no runs yet",
        ["", "", "wide", "wide", "wide", "", "wide", "", "wide"])
    url = "/runs" + (("?" + urlencode({k: v for k, v in (("task", task), ("outcome", outcome)) if v}))
                     if task or outcome else "")
    return h.page("Runs", body, None, 5.0, live_url=url)


def run_page(h: Html, summary: RunSummary, entries: list[dict[str, Any]],
             approvals: list[ApprovalRecord], outcomes: dict[str, dict[str, Any]],
             artifacts: list[str], flash: str | None) -> str:
    """`outcomes` maps an approval id to its action's `action.done` data (ok, error, output)."""
    r = summary
    buttons = ""
    if r.live or r.outcome in LIVE:
        buttons = h.button(f"/runs/{quote(r.run_id)}/cancel", "Cancel run", "cancel", "danger")
    elif r.outcome not in ("done",):
        buttons = h.button(f"/runs/{quote(r.run_id)}/retry", "Retry", "retry", "primary")
    facts = [("outcome", badge(h, r.outcome, colour(r.outcome))), ("task", h.t(r.task)),
             ("trigger", h.t(r.trigger or "—")), ("started", ago(r.started_at)),
             ("duration", human_duration(r.duration_s)),
             ("turns", "—" if r.turns is None else str(r.turns)), ("cost", human_cost(r.cost_usd)),
             ("tokens", f"{human_tokens(r.input_tokens)} in · {human_tokens(r.output_tokens)} out")]
    if (r.attempt and r.attempt > 1) or r.max_attempts:
        facts.append(("attempt", f"{r.attempt or 1}" + (f" of {r.max_attempts}" if r.max_attempts
                                                        else "")))
    if r.next_attempt_at is not None and r.live:
        facts.append(("next attempt", ago(r.next_attempt_at)))
    tiles = "".join(f'<div class="tile"><b>{v}</b><span>{k}</span></div>' for k, v in facts)
    error = f'<p class="bad">{h.t(r.error)}</p>' if r.error else ""
    parts = [f'<div class="tiles">{tiles}</div>{error}<p class="actions">{buttons}</p>']
    if approvals:
        parts.append("<h2>Approvals raised</h2>" + approval_rows(h, approvals, outcomes))
    if artifacts:
        links = "".join(f'<li><a href="/runs/{quote(r.run_id)}/artifacts/{quote(a)}">{h.t(a)}</a></li>'
                        for a in artifacts)
        parts.append(f"<h2>Artifacts</h2><ul>{links}</ul>")
    if r.result:
        parts.append(f'<h2>Result</h2><div class="card words">{h.t(r.result)}</div>')
    parts.append("<h2>Timeline</h2>" + timeline(h, entries))
    live = r.live or r.outcome in LIVE
    return h.page(f"Run {r.run_id}", "".join(parts), flash, 2.0 if live else None,
                  live_url=f"/runs/{quote(r.run_id)}")


def approval_rows(h: Html, records: list[ApprovalRecord], outcomes: dict[str, dict[str, Any]]) -> str:
    def row(a: ApprovalRecord) -> list[str]:
        return [badge(h, a.status, {"approved": "ok", "pending": "live", "rejected": "bad"}
                      .get(a.status, "warn")),
                f'<a href="/approvals#{quote(a.id)}">{h.t(a.action)}</a>', action_outcome(h, a, outcomes)]
    return table(h, ["status", "action", "outcome"], (row(a) for a in records), "none")


def action_outcome(h: Html, a: ApprovalRecord, outcomes: dict[str, dict[str, Any]]) -> str:
    """What became of an approved action: ran (with a summary) or failed (with the reason)."""
    if a.status != "approved":
        return f'<span class="muted">{h.t(a.status)}</span>'
    done = outcomes.get(a.id)
    if done is None:
        return ('<span class="muted">queued for the actions service</span>' if a.dispatched
                else '<span class="muted">not dispatched yet</span>')
    if done.get("ok"):
        summary = " ".join(str(done.get("output") or "").split())[:160]
        return f'<span class="ok">ran</span> <span class="small">{h.t(summary)}</span>'
    return f'<span class="bad">failed: {h.t(done.get("error") or "no reason given")}</span>'


def _fold(h: Html, key: str, label: str, piece: dict[str, Any] | str | None) -> str:
    """A tool input or output: shown whole when short, folded into <details> when long."""
    if isinstance(piece, dict):
        text, full = str(piece.get("text") or ""), piece.get("folded")
    else:
        text, full = str(piece or ""), None
    more = f" · cut at {len(text):,} of {int(full):,} characters" if full else ""
    if len(text) <= SHOWN_CHARS and not full:
        return f"<pre>{h.t(text)}</pre>" if text else ""
    return (f'<details id="{h.t(key)}"><summary class="small muted">{h.t(label)} · '
            f"{len(text):,} characters{more}</summary><pre>{h.t(text)}</pre></details>")


def timeline(h: Html, entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ('<p class="muted" id="timeline">No transcript for this run (it has not started, '
                "ran before transcripts were kept, or was pruned).</p>")
    costs = turn_costs(entries)
    items = []
    for i, e in enumerate(entries):
        kind, at = e.get("kind"), _short_time(e.get("at"))
        stamp = f'<span class="muted small">{at}</span> '
        if kind == "start":
            who = f" by {h.t(e['requested_by'])}" if e.get("requested_by") else ""
            items.append(f"<li class=\"ev\">{stamp}<b>Started</b> ({h.t(e.get('trigger'))}{who}, "
                         f"attempt {h.t(e.get('attempt', 1))}"
                         f"{', resumed' if e.get('resumed') else ''})</li>")
        elif kind == "step":
            items.append(f'<li class="step">{stamp}<b>Step {h.t(e.get("step"))}</b></li>')
        elif kind == "text":
            text = str(e.get("text") or "")
            more = (f' <span class="small muted">(cut at {len(text):,} of {int(e["folded"]):,} '
                    f"characters)</span>" if e.get("folded") else "")
            items.append(f'<li class="say">{stamp}<span class="small muted">agent, turn '
                         f'{h.t(e.get("turn"))}</span><div class="words">{h.t(text)}{more}</div></li>')
        elif kind == "tool":
            items.append(f'<li class="tool">{stamp}<span class="badge tool">{h.t(tool_name(e.get("name")))}'
                         f"</span> " + _tool_input(h, f"i{i}", e.get("input")) + "</li>")
        elif kind == "tool_result":
            cls = "bad" if e.get("is_error") else "muted"
            items.append(f'<li class="result">{stamp}<span class="small {cls}">'
                         f'{"error from" if e.get("is_error") else "result of"} '
                         f"{h.t(tool_name(e.get('name')))}</span>"
                         + _fold(h, f"o{i}", "output", e.get("output")) + "</li>")
        elif kind == "turn":
            cost = f" · {human_cost(costs[i])}" if i in costs else ""
            items.append(f'<li class="turn small muted">turn {h.t(e.get("turn"))}: '
                         f"{human_tokens(e.get('input_tokens'))} in, "
                         f"{human_tokens(e.get('output_tokens'))} out{cost}</li>")
        elif kind == "session":
            items.append(f'<li class="ev small">{stamp}session {h.t(e.get("outcome"))}: '
                         f"{h.t(e.get('turns'))} turns, {human_cost(e.get('cost_usd'))}, "
                         f"{human_duration(e.get('duration_s'))}"
                         + (f' <span class="bad">{h.t(e["error"])}</span>' if e.get("error") else "")
                         + "</li>")
        elif kind == "approval":
            items.append(f'<li class="ev">{stamp}<b>Approval requested</b>: {h.t(e.get("action"))} '
                         f'(<a href="/approvals#{quote(str(e.get("id", "")))}">{h.t(e.get("id"))}</a>)</li>')
        elif kind == "artifact":
            items.append(f'<li class="ev">{stamp}Saved <code>{h.t(e.get("path"))}</code></li>')
        elif kind == "cancel":
            items.append(f'<li class="ev warn">{stamp}<b>Cancel requested</b> by {h.t(e.get("by"))}</li>')
        elif kind == "end":
            cls = colour(str(e.get("outcome")))
            items.append(f'<li class="ev">{stamp}<b>Ended</b> {badge(h, str(e.get("outcome")), cls)}'
                         + (f' <span class="bad">{h.t(e["error"])}</span>' if e.get("error") else "")
                         + "</li>")
        else:
            items.append(f'<li class="ev small">{stamp}{h.t(e.get("text") or kind)}</li>')
    return f'<ol id="timeline" class="timeline">{"".join(items)}</ol>'


def tool_name(name: Any) -> str:
    """`mcp__koda__save_draft` as `koda · save_draft`."""
    text = str(name or "tool")
    if text.startswith("mcp__"):
        server, _, tool = text[5:].partition("__")
        return f"{server} · {tool}"
    return text


def _tool_input(h: Html, key: str, piece: Any) -> str:
    """A tool call's input: its fields one per line when it is a short JSON object (so a Bash
    command reads as a command), else folded like any long text."""
    text = str(piece.get("text") or "") if isinstance(piece, dict) else str(piece or "")
    folded = isinstance(piece, dict) and piece.get("folded")
    try:
        data = json.loads(text) if not folded else None
    except ValueError:
        data = None
    if isinstance(data, dict) and data and len(text) <= SHOWN_CHARS * 2:
        lines = "".join(f'<div><span class="muted">{h.t(k)}:</span> <code>{h.t(_plain(v))}</code></div>'
                        for k, v in data.items())
        return f'<div class="args">{lines}</div>'
    return _fold(h, key, "input", piece)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _short_time(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%H:%M:%S")
    except ValueError:
        return ""
