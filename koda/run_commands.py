"""`koda runs`, `koda show RUN [-f]` and `koda cancel RUN`: runs in the terminal.

They read what the console reads: run records in the home, transcripts in the state folder
(shared/transcript.py) and, when the bus is up, the ledger and approvals; without the bus they
show what is on disk and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from koda.cli import connect_bus, settings_from, with_bus
from koda.term import outcome_colour, paint, quiet_pipe

FOLD_LINES = 6



async def _connect(settings: Any, timeout: float = 2.0) -> Any:
    bus = await connect_bus(settings, timeout=timeout, ensure=False, quiet=True)
    if bus is None:
        return None
    try:
        for bucket in ("runs", "approvals"):
            bus.kv[bucket] = await bus.js.key_value(bucket)
        return bus
    except Exception:
        await bus.close()
        return None


async def _ledger(bus: Any) -> list[Any]:
    from koda.shared.messages import RunLedgerEntry

    out: list[Any] = []
    if bus is None:
        return out
    try:
        watcher = await bus.kv["runs"].watch(">", ignore_deletes=True)
        async for entry in watcher:
            if entry is None:
                break
            try:
                out.append(RunLedgerEntry.from_bytes(entry.value))
            except ValueError:
                continue
        await watcher.stop()
    except Exception:
        return []
    return out


# --- koda runs ---------------------------------------------------------------------------------

def cmd_runs(args: argparse.Namespace) -> int:
    from koda.shared.home import HomeLayout
    from koda.shared.run_record import read_records
    from koda.shared.runs_view import filtered, merge

    settings = settings_from(args)

    async def gather() -> tuple[list[Any], bool]:
        bus = await _connect(settings)
        try:
            return await _ledger(bus), bus is not None
        finally:
            if bus is not None:
                await bus.close()

    ledger, reached = asyncio.run(gather())
    rows = merge(read_records(HomeLayout(settings.expanded_home()).runs), ledger)
    rows = filtered(rows, args.task, args.outcome)[: args.limit]
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=1))
        return 0
    print(runs_table(rows))
    if not reached:
        print(paint("(the bus is not reachable: running runs are not shown)", "grey"))
    return 0


def runs_table(rows: list[Any]) -> str:
    from koda.shared.runs_view import human_cost, human_duration, human_tokens

    if not rows:
        return "no runs"
    cells = [[r.outcome, r.run_id, r.trigger or "-", _ago(r.started_at or r.finished_at),
              human_duration(r.duration_s), "-" if r.turns is None else str(r.turns),
              human_cost(r.cost_usd), human_tokens(r.tokens)] for r in rows]
    heads = ["OUTCOME", "RUN", "TRIGGER", "STARTED", "DURATION", "TURNS", "COST", "TOKENS"]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    right = {4, 5, 6, 7}

    def line(values: list[str], colour: str | None = None) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                         strict=True))]
        if colour:
            parts[0] = paint(parts[0], colour)
        return "  ".join(parts).rstrip()
    return "\n".join([line(heads)] + [line(c, outcome_colour(c[0])) for c in cells])


def _ago(value: Any) -> str:
    from datetime import UTC, datetime

    from koda.shared.runs_view import human_duration

    if value is None:
        return "-"
    return human_duration((datetime.now(UTC) - value).total_seconds()) + " ago"


# --- koda show ---------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    return asyncio.run(_show(settings_from(args), args.run, args.follow, args.json, args.full))


async def _show(settings: Any, run_id: str, follow: bool, as_json: bool, full: bool) -> int:
    from koda.shared.home import HomeLayout
    from koda.shared.run_record import read_record
    from koda.shared.runs_view import LIVE, RunSummary, merge
    from koda.shared.transcript import RUN_ID, read_entries

    if not RUN_ID.match(run_id):
        print(f"{run_id!r} is not a run id (see `koda runs`)", file=sys.stderr)
        return 2
    layout, state = HomeLayout(settings.expanded_home()), settings.expanded_state()
    bus = await _connect(settings)
    try:
        record = read_record(layout.runs, run_id)
        ledger = [e for e in await _ledger(bus) if e.run_id == run_id] if bus else []
        rows = merge({run_id: record} if record else {}, ledger)
        entries = read_entries(state, run_id)
        if not rows and not entries:
            print(f"no run {run_id} (no record, no transcript"
                  + (", nothing in the ledger)" if bus else "; the bus is not reachable)"), file=sys.stderr)
            return 1
        summary = rows[0] if rows else RunSummary(run_id, run_id.split(".")[0], "?")
        approvals = await _approvals(bus, run_id)
        if as_json:
            print(json.dumps({"run": summary.as_json(), "approvals": approvals,
                              "transcript": entries}, indent=1, default=str))
            return 0
        print(header(summary))
        for a in approvals:
            print(f"  approval {a['id']}: {a['action']} {paint(a['status'], outcome_colour(a['status']))}")
        for line in timeline_lines(entries, full):
            print(line)
        if not entries:
            print(paint("  (no transcript: not started yet, from before transcripts, or pruned)", "grey"))
        seen = len(entries)
        # Over when the transcript says so, or a record says it ended (a run from before
        # transcripts); a run known only by its transcript so far is still going.
        ended = any(e.get("kind") == "end" for e in entries) or (
            bool(rows) and summary.outcome not in LIVE and not summary.live)
        while follow and not ended:
            await asyncio.sleep(0.5)
            more = read_entries(state, run_id, after=seen)
            seen += len(more)
            for line in timeline_lines(more, full):
                print(line, flush=True)
            ended = any(e.get("kind") == "end" for e in more)
        return 0
    finally:
        if bus is not None:
            await bus.close()


async def _approvals(bus: Any, run_id: str) -> list[dict[str, Any]]:
    if bus is None:
        return []
    from koda.shared.approvals import ApprovalStore

    try:
        return [{"id": r.id, "action": r.action, "status": r.status, "decided_by": r.decided_by}
                for r in await ApprovalStore(bus).all() if r.run_id == run_id]
    except Exception:
        return []


def header(r: Any) -> str:
    from koda.shared.runs_view import human_cost, human_duration, human_tokens

    bits = [r.trigger or "?", human_duration(r.duration_s),
            f"{'-' if r.turns is None else r.turns} turns", human_cost(r.cost_usd),
            f"{human_tokens(r.input_tokens)} in / {human_tokens(r.output_tokens)} out"]
    if r.attempt and r.attempt > 1:
        bits.append(f"attempt {r.attempt}")
    out = (f"{paint(r.run_id, 'bold')}  {paint(r.outcome, outcome_colour(r.outcome))}  "
           f"({', '.join(bits)})")
    if r.error:
        out += "\n  " + paint(r.error, "red")
    return out


def timeline_lines(entries: list[dict[str, Any]], full: bool = False) -> list[str]:
    from koda.shared.runs_view import human_cost, human_duration, human_tokens
    from koda.shared.transcript import turn_costs

    costs = turn_costs(entries)
    out: list[str] = []
    pad = " " * 10
    for i, e in enumerate(entries):
        kind, at = e.get("kind"), str(e.get("at", ""))[11:19]
        stamp = paint(at.ljust(8), "grey") + "  "
        if kind == "start":
            out.append(stamp + paint(f"started ({e.get('trigger')}, attempt {e.get('attempt', 1)}"
                                     f"{', resumed' if e.get('resumed') else ''})", "bold"))
        elif kind == "step":
            out.append(stamp + paint(f"── step {e.get('step')}", "bold"))
        elif kind == "text":
            out += _block(stamp + paint("agent: ", "cyan"), str(e.get("text", "")), pad, full,
                          e.get("folded"))
        elif kind == "tool":
            out += _block(stamp + paint(f"→ {e.get('name')} ", "magenta"),
                          str((e.get("input") or {}).get("text", "")), pad, full,
                          (e.get("input") or {}).get("folded"))
        elif kind == "tool_result":
            mark = paint("← error ", "red") if e.get("is_error") else paint("← ", "grey")
            out += _block(pad + mark, str((e.get("output") or {}).get("text", "")), pad, full,
                          (e.get("output") or {}).get("folded"))
        elif kind == "turn":
            cost = f", {human_cost(costs[i])}" if i in costs else ""
            out.append(pad + paint(f"turn {e.get('turn')}: {human_tokens(e.get('input_tokens'))} in, "
                                   f"{human_tokens(e.get('output_tokens'))} out{cost}", "grey"))
        elif kind == "session":
            out.append(stamp + f"session {e.get('outcome')}: {e.get('turns')} turns, "
                       f"{human_cost(e.get('cost_usd'))}, {human_duration(e.get('duration_s'))}"
                       + (paint(f" ({e['error']})", "red") if e.get("error") else ""))
        elif kind == "approval":
            out.append(stamp + paint(f"approval requested: {e.get('action')} ({e.get('id')})", "yellow"))
        elif kind == "artifact":
            out.append(stamp + f"saved {e.get('path')}")
        elif kind == "cancel":
            out.append(stamp + paint(f"cancel requested by {e.get('by')}", "yellow"))
        elif kind == "end":
            outcome = str(e.get("outcome"))
            out.append(stamp + paint("ended ", "bold") + paint(outcome, outcome_colour(outcome))
                       + (paint(f": {e['error']}", "red") if e.get("error") else ""))
        else:
            out.append(stamp + str(e.get("text") or kind))
    return out


def _block(first: str, text: str, pad: str, full: bool, folded: Any) -> list[str]:
    lines = text.splitlines() or [""]
    cut = not full and len(lines) > FOLD_LINES
    shown = lines[:FOLD_LINES] if cut else lines
    out = [first + shown[0]] + [pad + "  " + line for line in shown[1:]]
    if cut or folded:
        more = f"{len(lines) - FOLD_LINES} more lines" if cut else ""
        if folded:
            more += ("; " if more else "") + f"kept {len(text):,} of {int(folded):,} characters"
        out.append(pad + "  " + paint(f"… ({more}; --full shows all)" if cut else f"… ({more})", "grey"))
    return out


# --- koda cancel -------------------------------------------------------------------------------

def cmd_cancel(args: argparse.Namespace) -> int:
    async def work(bus: Any, settings: Any) -> int:
        from koda.shared.controls import cancel

        await cancel(bus, args.run, args.run.rsplit(".", 1)[0], f"terminal ({getpass.getuser()})")
        print(f"asked the workers to cancel {args.run}; `koda show {args.run}` shows the end")
        return 0
    return with_bus(args, work, ensure=False)


def register(sub: Any) -> dict[str, Any]:
    p = sub.add_parser("runs", help="runs, running first: duration, turns, cost, tokens, outcome")
    p.add_argument("--task", help="only this task's runs")
    p.add_argument("--outcome", help="only runs with this outcome (live = still going)")
    p.add_argument("-n", "--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("show", help="a run's timeline: turns, tool calls, tokens, cost, approvals")
    p.add_argument("run")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.add_argument("--full", action="store_true", help="do not fold long texts")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("cancel", help="cancel a running or queued run")
    p.add_argument("run")
    return {"runs": quiet_pipe(cmd_runs), "show": quiet_pipe(cmd_show), "cancel": cmd_cancel}

