"""The words the gateway posts: approval requests and outcomes, run reports, alerts, the digest.

Pure functions from records and events to text, each redacted before it is shortened to Discord's
2,000 characters, so no secret value reaches Discord whatever a record or an agent's output
contains (a cut made first could split a secret past recognition).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from koda.shared.events import AlertEvent, BadEvent, Notify, RunEnded
from koda.shared.messages import ApprovalRecord, Event
from koda.shared.secrets import Redactor

log = logging.getLogger(__name__)
LIMIT = 1900  # Discord allows 2,000 characters per message
ICONS = {"approved": "✅", "rejected": "❌", "expired": "⌛", "pending": "⏳"}
SEVERITY_ICONS = {"info": "📣", "warning": "⚠️", "error": "🛑", "critical": "🚨"}


def clip(text: str, limit: int = LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe(text: str, redact: Redactor, limit: int = LIMIT) -> str:
    """Redact, then clip: a cut made first could split a secret so the redactor no longer
    recognises what is left of it."""
    return clip(redact(text), limit)


def _ts(when: datetime | None) -> str:
    return f"<t:{int(when.timestamp())}:R>" if when else "never"


def _fenced(text: str, limit: int) -> str:
    """A code block of at most `limit` characters that is always closed."""
    fence = "`" * 3
    inner = text.replace(fence, "'" * 3)  # a fence inside would end the block early
    room = limit - 2 * len(fence)
    return f"{fence}{clip(inner, room)}{fence}" if room > 1 else ""


def approval_text(record: ApprovalRecord, redact: Redactor, artifact_preview: str | None = None
                  ) -> str:
    """The approval message: what, for which task and run, why, the artifact (with the start of
    its text when it is a draft), the deadline, the id and the outcome.

    Everything is redacted first; then the middle (why, preview, args) is shortened to fit one
    Discord message, so the id and the outcome are always there and every code block is closed.
    """
    head = redact(f"{ICONS.get(record.status, '')} **Approval needed:** `{record.action}` "
                  f"for task `{record.task}` (run `{record.run_id}`)")
    tail = [f"**Expires:** {_ts(record.expires_at)} · id `{record.id}`"]
    if record.status != "pending":
        who = record.decided_by or "?"
        who = f"<@{who}>" if who.isdigit() else who
        tail.append(f"\n{ICONS.get(record.status, '')} **{record.status.capitalize()}** by {who} "
                    f"{_ts(record.decided_at)}")
    else:
        tail.append("Approve or reject with the buttons, or react ✅ / ❌.")
    end = redact("\n".join(tail))
    room = LIMIT - len(head) - len(end) - 2
    middle: list[str] = []

    def add(text: str, cap: int) -> None:
        nonlocal room
        part = clip(text, min(cap, room - 1))
        if len(part) > 1 and room > 1:
            middle.append(part)
            room -= len(part) + 1

    if record.reason:
        add(f"**Why:** {redact(record.reason)}", 900)
    if record.artifact:
        add(f"**Artifact:** `{redact(record.artifact)}`", 300)
        if artifact_preview:
            add(_fenced(redact(artifact_preview), min(700, room - 1)), 700)
    if record.args:
        label = "**Args:** "
        args = _fenced(redact(json.dumps(record.args, indent=1, default=str)),
                       min(700, room - 1 - len(label)))
        if args:
            add(label + args, 720)
    return "\n".join([head, *middle, end])


def reminder_text(record: ApprovalRecord, redact: Redactor) -> str:
    return safe(f"⏰ Reminder: `{record.action}` for `{record.task}` still needs a decision; "
                f"it expires {_ts(record.expires_at)} and is then rejected.", redact)


def run_report(event: Event, redact: Redactor) -> str:
    """A `run.finished` / `run.failed` report for the reports channel."""
    run = RunEnded.of(event)
    icon = "✅" if run.done else "🛑"
    parts = [f"{icon} **{event.task or '?'}** `{event.run_id or ''}`: {run.outcome}"]
    facts = []
    if run.turns is not None:
        facts.append(f"{run.turns} turns")
    if run.cost_usd is not None:
        facts.append(f"${run.cost_usd:.4f}")
    if run.duration_s is not None:
        facts.append(f"{run.duration_s:.1f} s")
    if facts:
        parts[0] += " (" + ", ".join(facts) + ")"
    if run.error:
        parts.append(f"Error: {run.error}")
    if run.artifacts:
        parts.append("Artifacts: " + ", ".join(f"`{a}`" for a in run.artifacts[:10]))
    if run.result:
        parts.append(run.result)
    return safe("\n".join(parts), redact)


def chat_answer(event: Event, redact: Redactor) -> str:
    """The answer of a chat run, for the thread it came from."""
    run = RunEnded.of(event)
    result = run.result or event.summary or "(no answer)"
    if not run.done:
        result = f"🛑 {run.outcome}: {run.error or result}"
    return safe(result, redact)


def alert_text(event: Event, redact: Redactor) -> str:
    """An `alert` or `incident.*` event for the alerts channel."""
    icon = SEVERITY_ICONS.get(event.severity, "")
    kind = event.event
    if event.event in AlertEvent.kinds:
        try:
            kind = AlertEvent.of(event).kind
        except BadEvent as exc:  # from another version: the alert still shows, by its event kind
            log.warning("%s", exc)
    head = f"{icon} **{event.event}** ({kind})" + (f" task `{event.task}`" if event.task else "")
    return safe(f"{head}\n{event.summary}", redact)


def notify_text(event: Event, redact: Redactor) -> str:
    """A note the agent sent to its people (the worker's notify tool)."""
    where = f" (`{event.task}`)" if event.task else ""
    return safe(f"💬 **Koda{where}:** {Notify.of(event).text or event.summary}", redact)


def digest_text(events: Iterable[Event], pending: list[ApprovalRecord], redact: Redactor,
                day: str) -> str:
    """The daily digest: runs by outcome and task, spend, alerts, approvals still waiting."""
    outcomes: Counter[str] = Counter()
    by_task: Counter[str] = Counter()
    cost = 0.0
    alerts = 0
    failed: list[str] = []
    for event in events:
        if event.event in RunEnded.kinds:
            try:
                run = RunEnded.of(event)
            except BadEvent as exc:  # from another version: the digest goes on without it
                log.warning("%s", exc)
                continue
            outcomes[run.outcome] += 1
            by_task[event.task or "?"] += 1
            cost += run.cost_usd or 0.0
            if not run.done:
                failed.append(f"`{event.task}` {run.outcome}")
        elif event.event == "alert" or event.event.startswith("incident.opened"):
            alerts += 1
    total = sum(outcomes.values())
    lines = [f"📋 **Daily digest {day}**",
             f"Runs: {total}" + (" (" + ", ".join(f"{n} {o}" for o, n in outcomes.most_common())
                                 + ")" if total else ""),
             f"Spend: ${cost:.2f}", f"Alerts: {alerts}"]
    if by_task:
        lines.append("By task: " + ", ".join(f"`{t}` {n}" for t, n in by_task.most_common(10)))
    if failed:
        lines.append("Not done: " + ", ".join(failed[:10]))
    lines.append(f"Pending approvals: {len(pending)}"
                 + ("".join(f"\n• `{r.action}` for `{r.task}`" for r in pending[:10])))
    return safe("\n".join(lines), redact)
