"""What the Runs, run and Approvals pages read: run summaries (records plus the live ledger),
a run's transcript and approvals, and what became of each approved action."""

from __future__ import annotations

from typing import Any

from koda.shared.bus import Bus
from koda.shared.events import ActionDone, BadEvent
from koda.shared.kv_record import KVRecords
from koda.shared.messages import ActionRecord, ApprovalRecord, RunLedgerEntry, action_key
from koda.shared.run_record import read_record, read_records
from koda.shared.runs_view import RunSummary, merge
from koda.shared.transcript import read_entries

from .context import GatewayContext
from .events import latest_of
from .status import ledger


async def summaries(ctx: GatewayContext) -> list[RunSummary]:
    rows = merge(read_records(ctx.home.runs), await ledger(ctx.bus))
    for row in rows:
        if row.live and row.trigger is None:
            _fill_from_transcript(ctx, row)
    return rows


def _fill_from_transcript(ctx: GatewayContext, row: RunSummary) -> None:
    """A live run's trigger, turns, tokens and cost so far, from its transcript."""
    turns = tokens_in = tokens_out = 0
    cost = 0.0
    for e in read_entries(ctx.settings.expanded_state(), row.run_id):
        kind = e.get("kind")
        if kind == "start":
            row.trigger = e.get("trigger")
        elif kind == "turn":
            turns += 1
            tokens_in += int(e.get("input_tokens") or 0)
            tokens_out += int(e.get("output_tokens") or 0)
        elif kind == "session":
            cost += float(e.get("cost_usd") or 0.0)
    if turns:
        row.turns, row.input_tokens, row.output_tokens = turns, tokens_in, tokens_out
        row.cost_usd = cost or None


async def summary(ctx: GatewayContext, run_id: str) -> RunSummary | None:
    """One run: its record if it has ended, else what the ledger says while it goes."""
    record = read_record(ctx.home.runs, run_id)
    entry = await _ledger_entry(ctx.bus, run_id)
    rows = merge({run_id: record} if record else {}, [entry] if entry else [])
    if not rows:
        return None
    row = rows[0]
    if row.live or row.trigger is None:
        _fill_from_transcript(ctx, row)
    return row


async def _ledger_entry(bus: Bus, run_id: str) -> RunLedgerEntry | None:
    try:
        found = await KVRecords(bus.kv["runs"], RunLedgerEntry).get(run_id)
    except ValueError:  # a key NATS refuses, or a record from another version
        return None
    return found.value if found else None


def entries(ctx: GatewayContext, run_id: str) -> list[dict[str, Any]]:
    """The run's transcript (the page redacts each text again as it renders it)."""
    return read_entries(ctx.settings.expanded_state(), run_id)


async def action_outcomes(bus: Bus, records: list[ApprovalRecord]) -> dict[str, dict[str, Any]]:
    """For each approved record: the action's result (the actions KV), or its refusal (the
    `action.done` event, for actions refused before they ran, e.g. no script handles them)."""
    out: dict[str, dict[str, Any]] = {}
    approved = [r for r in records if r.status == "approved"]
    for record in approved:
        key = record.idempotency_key or f"approval:{record.id}"
        try:
            found = await KVRecords(bus.kv["actions"], ActionRecord).get(action_key(key))
        except (ValueError, KeyError):  # a record from another version; no actions bucket
            continue
        if found and found.value.result is not None:
            result = found.value.result
            out[record.id] = {"ok": result.ok, "output": result.output, "error": result.error}
    if any(r.id not in out for r in approved):
        for event in await latest_of(bus, "action.done"):
            try:
                action = ActionDone.of(event)
            except BadEvent:
                continue  # from another version: the page does without it
            if action.approval_id and action.approval_id not in out:
                out[action.approval_id] = {"ok": action.ok, "output": event.summary,
                                           "error": action.error}
    return out
