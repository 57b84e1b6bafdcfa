"""The console's Approvals page: one card per approval, pending first, with the draft it is
about rendered inline (and linked), a link to the run that raised it, and what became of the
action once approved (ran, with a summary, or failed, with the reason)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from koda.shared.messages import ApprovalRecord

from .markdown_view import render
from .pages import Html, ago, badge
from .run_pages import action_outcome
from .status import preview

STATUS_CLASS = {"pending": "live", "approved": "ok", "rejected": "bad", "expired": "warn"}


def approvals(h: Html, records: list[ApprovalRecord], flash: str | None,
              drafts: dict[str, tuple[str, Path]], outcomes: dict[str, dict[str, Any]]) -> str:
    """`drafts` maps an approval id to its draft's link path and file (only under data/drafts)."""
    ordered = sorted(records, key=lambda r: (r.status != "pending",
                                             r.created_at if r.status == "pending"
                                             else -(r.decided_at or r.created_at).timestamp()))
    pending = [r for r in ordered if r.status == "pending"]
    done = [r for r in ordered if r.status != "pending"]
    body = (f'<h2>Waiting for you ({len(pending)})</h2>'
            + ("".join(card(h, r, drafts, outcomes) for r in pending)
               or '<p class="muted">Nothing waiting.</p>'))
    if done:
        body += "<h2>Decided</h2>" + "".join(card(h, r, drafts, outcomes) for r in done[:100])
    return h.page("Approvals", body, flash)


def card(h: Html, r: ApprovalRecord, drafts: dict[str, tuple[str, Path]],
         outcomes: dict[str, dict[str, Any]]) -> str:
    head = (f'<span class="status badge {STATUS_CLASS.get(r.status, "")}">{h.t(r.status)}</span> '
            f"<b>{h.t(r.action)}</b> for <b>{h.t(r.task)}</b> · "
            f'<a href="/runs/{quote(r.run_id)}">run {h.t(r.run_id)}</a> '
            f'<span class="small muted">· asked {ago(r.created_at)}</span>')
    reason = f"<p>{h.t(r.reason)}</p>" if r.reason else ""
    draft = ""
    if r.id in drafts:
        link, path = drafts[r.id]
        text = preview(path, 2000)
        body = (f'<div class="draft doc">{render(text, h.t)}</div>' if path.suffix in (".md", ".txt")
                else f'<pre class="draft">{h.t(text)}</pre>')
        draft = (f'<div class="small">Draft: <a href="/drafts/{quote(link)}">{h.t(r.artifact)}</a>'
                 f"</div>{body}")
    elif r.artifact:
        draft = f'<div class="small muted">Draft {h.t(r.artifact)} (not viewable)</div>'
    args = (f'<details id="a-{h.t(r.id)}"><summary class="small muted">arguments</summary>'
            f"<pre>{h.t(json.dumps(r.args, indent=1, default=str))}</pre></details>" if r.args else "")
    if r.status == "pending":
        expires = f' <span class="small muted">expires {ago(r.expires_at)}</span>' if r.expires_at else ""
        foot = (h.button(f"/approvals/{quote(r.id)}/approve", "Approve", "approve", "primary") + " "
                + h.button(f"/approvals/{quote(r.id)}/reject", "Reject", "reject", "danger") + expires)
    else:
        note = f' <span class="small muted">“{h.t(r.note)}”</span>' if r.note else ""
        outcome = f"<div>{action_outcome(h, r, outcomes)}</div>" if r.status == "approved" else ""
        foot = (f'<span class="small">{h.t(r.status)} by {h.t(r.decided_by)} {ago(r.decided_at)}'
                f"</span>{note}{outcome}")
    return (f'<div class="card approval" id="{h.t(r.id)}" data-id="{h.t(r.id)}">'
            f'<div>{head}</div>{reason}{draft}{args}<div class="actions">{foot}</div>'
            f'<div class="small muted">{h.t(r.id)}</div></div>')


__all__ = ["approvals", "badge"]
