"""`koda pause|resume|enable|disable TASK`, `koda approvals`, `koda approve|reject ID`: what a
person does from the console, from the terminal. They go through the same code as the console
(shared/controls.py), and a decision goes through the gateway's console API, recorded as
`decided_by: terminal`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from koda.cli import settings_from, with_bus
from koda.term import outcome_colour, paint, quiet_pipe

TERMINAL = "terminal"



def _who() -> str:
    return f"{TERMINAL} ({getpass.getuser()})"


def cmd_task_state(args: argparse.Namespace) -> int:
    from koda.shared import controls
    from koda.shared.home import HomeLayout

    verb = args.command

    async def work(bus: Any, settings: Any) -> int:
        home = HomeLayout(settings.expanded_home())
        try:
            if verb == "pause":
                await controls.pause(bus, home, args.task, _who(), args.reason or "paused from the terminal")
                print(f"paused {args.task}: no scheduled fires until `koda resume {args.task}`")
            elif verb == "resume":
                done = await controls.resume(bus, args.task, _who())
                print(f"resumed {args.task}" if done else f"{args.task} was not paused")
            else:
                changed = await controls.set_enabled(bus, home, args.task, verb == "enable", _who())
                print(f"{args.task} {verb}d in {home.tasks}" if changed
                      else f"{args.task} was already {verb}d")
        except (controls.UnknownTask, controls.TaskEditError) as exc:
            print(str(exc), file=sys.stderr)
            return 2
        return 0
    return with_bus(args, work)


def cmd_approvals(args: argparse.Namespace) -> int:
    from koda.shared.approvals import ApprovalStore

    async def work(bus: Any, settings: Any) -> int:
        records = await ApprovalStore(bus).all()
        records.sort(key=lambda r: (r.status != "pending", -r.created_at.timestamp()))
        if not args.all:
            records = [r for r in records if r.status == "pending"] or records[:10]
        if args.json:
            print(json.dumps([r.model_dump(mode="json") for r in records], indent=1))
            return 0
        if not records:
            print("no approvals")
        for r in records:
            status = paint(f"{r.status:<8}", outcome_colour({"approved": "done", "rejected": "failed",
                                                             "pending": "running"}.get(r.status, r.status)))
            print(f"{status} {paint(r.id, 'bold')}\n         {r.action} for {r.task} (run {r.run_id})"
                  + (f"\n         {r.reason}" if r.reason else "")
                  + (f"\n         draft: {r.artifact}" if r.artifact else "")
                  + (f"\n         {r.status} by {r.decided_by}" if r.decided_by else ""))
        return 0
    return with_bus(args, work)


def cmd_decide(args: argparse.Namespace) -> int:
    """Decide through the gateway's console API (the token in the state folder): only the
    gateway holds the key that signs a decision, and a person at the terminal may use it."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from koda.shared.settings import KodaSettings

    settings: KodaSettings = settings_from(args)
    token = (settings.console_token.get_secret_value() if settings.console_token else None)
    token_file = settings.expanded_state() / "console-token"
    if token is None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError:
            print(f"no console token (KODA_CONSOLE_TOKEN or {token_file}): is the stack up?",
                  file=sys.stderr)
            return 1
    verb = "approve" if args.command == "approve" else "reject"
    url = (f"http://127.0.0.1:{settings.console_listen_port()}/approvals/"
           f"{urllib.parse.quote(args.id, safe='')}/{verb}")
    body = urllib.parse.urlencode({"by": "terminal", "note": args.note or ""}).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            print(answer.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode() or str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach the gateway's console at {url}: {exc}; is the stack up?",
              file=sys.stderr)
        return 1


def register(sub: Any) -> dict[str, Any]:
    commands: dict[str, Any] = {}
    for verb, text in (("pause", "stop TASK's scheduled fires until resumed (manual runs still go)"),
                       ("resume", "let a paused TASK fire again"),
                       ("enable", "set enabled: true for TASK in tasks.json"),
                       ("disable", "set enabled: false for TASK in tasks.json")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("task")
        if verb == "pause":
            p.add_argument("--reason", help="shown beside the pause")
        commands[verb] = cmd_task_state
    p = sub.add_parser("approvals", help="approvals waiting for a decision (--all for decided ones)")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    commands["approvals"] = quiet_pipe(cmd_approvals)
    for verb in ("approve", "reject"):
        p = sub.add_parser(verb, help=f"{verb} approval ID (recorded as decided from the terminal)")
        p.add_argument("id")
        p.add_argument("--note", help="a note kept on the approval and in its event")
        commands[verb] = cmd_decide
    return commands
