"""The `koda` command. Imports stay inside each command so `koda service X` starts lean."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from koda.term import quiet_pipe

if TYPE_CHECKING:
    from koda.shared.bus import Bus
    from koda.shared.settings import KodaSettings


def settings_from(args: argparse.Namespace) -> KodaSettings:
    """The settings every command uses: the environment and the config file, `--home` on top;
    against a local stack the command connects as its own NATS user (`koda`)."""
    from koda.natsauth import for_cli
    from koda.shared.settings import KodaSettings

    return for_cli(KodaSettings(home=Path(args.home)) if getattr(args, "home", None) else KodaSettings())


async def connect_bus(settings: KodaSettings, *, timeout: float = 5.0, ensure: bool = True,
                      quiet: bool = False) -> Bus | None:
    """A command's NATS connection (as `cli`); None when NATS cannot be reached, after saying
    so with the fix (unless `quiet`: a command that works without the bus)."""
    from koda.shared.bus import Bus
    from koda.shared.errors import BusError

    try:
        return await Bus.connect(settings, "cli", timeout=timeout, ensure=ensure)
    except BusError as exc:
        if not quiet:
            print(f"{exc}; is the stack up (`koda up -d`)?", file=sys.stderr)
        return None


def with_bus(args: argparse.Namespace, work: Callable[[Bus, KodaSettings], Awaitable[int]], *,
             ensure: bool = True) -> int:
    """Run `work` with a connection, closed after; exit code 1 when NATS cannot be reached."""
    import asyncio

    async def go() -> int:
        settings = settings_from(args)
        bus = await connect_bus(settings, ensure=ensure)
        if bus is None:
            return 1
        try:
            return await work(bus, settings)
        finally:
            await bus.close()
    return asyncio.run(go())


def cmd_init(args: argparse.Namespace) -> int:
    from koda.shared.home import init_home
    from koda.shared.safe_write import UnsafePath

    settings = settings_from(args)
    home = settings.expanded_home()
    try:
        report = init_home(settings)
    except UnsafePath as exc:
        # A link in the home (the agent can make them) is never written through.
        print(f"koda init: {exc}; remove the link and run koda init again", file=sys.stderr)
        return 1
    except PermissionError:
        # Typically a host folder mounted as the home, owned by another user than the one Koda
        # runs as (uid 10001 in the image).
        print(f"koda init: cannot write in {home}: permission denied for uid "
              f"{os.getuid()}. The agent home must be writable by the user Koda runs as: "
              f"`sudo chown -R {os.getuid()}:{os.getgid()} {home}` on the host side of a "
              "mounted folder, or keep compose's named volume (docs/deploy.md, "
              "\"The agent home\").", file=sys.stderr)
        return 1
    print(f"agent home: {home}")
    for label, items in (("created", report.created), ("updated", report.updated),
                         ("kept (you changed them)", report.kept_user_changes)):
        if items:
            print(f"  {label}: {', '.join(items)}")
    if not (report.created or report.updated or report.kept_user_changes):
        print("  up to date")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from koda.shared.doctor import check_discord, check_home, problems_as_json
    from koda.shared.home import HomeLayout

    settings = settings_from(args)
    problems = check_home(HomeLayout(settings.expanded_home()))
    problems += check_discord(settings.expanded_state())
    if args.json:
        print(problems_as_json(problems))
    else:
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{settings.expanded_home()}: ok")
    return 1 if problems else 0


def cmd_keys(args: argparse.Namespace) -> int:
    from koda.shared.approval_keys import generate

    private, public = generate()
    print(f"KODA_APPROVAL_SIGNING_KEY={private}\nKODA_APPROVAL_VERIFY_KEY={public}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from koda.shared.settings import SOURCE_DIR
    from koda.shared.tasks import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    target = SOURCE_DIR / "volumes" / "koda" / "tasks.schema.json"
    if args.write:
        target.write_text(text)
        print(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from koda import stack
    from koda.natsauth import for_cli
    from koda.shared.health import heartbeat_ages_sync
    from koda.shared.home import init_home

    settings = settings_from(args)
    init_home(settings)
    if stack.is_running(settings):
        print(f"a stack is already running from {settings.expanded_state()}; "
              "see `koda status`, or stop it with `koda down`", file=sys.stderr)
        return 1
    conf = stack.write_configs(settings, Path.cwd())
    settings = for_cli(settings)  # the passwords were just generated
    # supervisord itself, with a shorter idle wait (see quick_supervisord.py).
    supervisord = [sys.executable, "-m", "koda.quick_supervisord"]
    print(f"koda: home {settings.expanded_home()}, state {settings.expanded_state()}, "
          f"logs in {settings.log_dir()}", flush=True)
    if not args.detach:
        from koda.foreground import run_foreground

        return run_foreground(settings, [*supervisord, "-n", "-c", str(conf)], args.wait)
    subprocess.run([*supervisord, "-c", str(conf)], check=True)
    healthy = stack.wait_healthy(settings, lambda: heartbeat_ages_sync(settings, 1.0), args.wait)
    rows = stack.collect_status(settings, heartbeat_ages_sync(settings))
    print(stack.format_status(rows))
    if not healthy:
        print(f"not every service heartbeated within {args.wait:.0f}s; see `koda logs` "
              f"({settings.log_dir()})", file=sys.stderr)
        return 1
    from koda.foreground import ready_banner

    print(ready_banner(settings, detached=True))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from koda import stack

    settings = settings_from(args)
    if not stack.is_running(settings):
        print("no stack is running")
        return 0
    pidfile = settings.expanded_state() / "supervisord.pid"
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else None
    stack.supervisor_rpc(settings).supervisor.shutdown()
    deadline = time.monotonic() + settings.drain_timeout + 20
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    print("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from koda import stack
    from koda.shared.health import heartbeat_ages_sync

    settings = settings_from(args)
    rows = stack.collect_status(settings, heartbeat_ages_sync(settings))
    print(stack.status_json(rows) if args.json else stack.format_status(rows))
    return 0 if all(r.state in stack.HEALTHY_STATES for r in rows) else 1


def cmd_health(args: argparse.Namespace) -> int:
    # Compose runs this in every container every 30 s: skip nats-py's unused WebSocket
    # transport (aiohttp), about a third of the command's CPU (bench/healthcheck.py).
    sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]
    settings = settings_from(args)
    if args.liveness:
        from koda.liveness import check

        verdict = check(settings, args.service)
        print(verdict.text, file=sys.stdout if verdict.code == 0 else sys.stderr)
        return verdict.code
    from koda.shared.health import heartbeat_ages_sync

    age = heartbeat_ages_sync(settings).get(args.service)
    if age is None or age > settings.heartbeat_ttl:
        print(f"{args.service}: no fresh heartbeat in the health bucket at {settings.nats_url}"
              " (see `koda status`)", file=sys.stderr)
        return 1
    print(f"{args.service}: heartbeat {age:.1f}s ago")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    import asyncio

    from koda.services.scraper import site_admin

    code, text = asyncio.run(site_admin(settings_from(args), args.action, getattr(args, "site", None)))
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_service(args: argparse.Namespace) -> int:
    from koda.shared.launch import run_named

    run_named(args.name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="koda", description="Run a Claude Code agent as a service.")
    parser.add_argument("--home", help="agent home (default: $KODA_HOME or ~/.koda)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or update the agent home from the template")
    p = sub.add_parser("doctor", help="check the agent home; non-zero exit on any problem")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("up", help="start NATS and every service under supervisord")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for every service's health")
    sub.add_parser("down", help="stop a stack started with `up -d`")
    p = sub.add_parser("status", help="state, pid, uptime, restarts and heartbeat of each service")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("health", help="exit 0 if SERVICE has a fresh heartbeat")
    p.add_argument("service")
    p.add_argument("--liveness", action="store_true",
                   help="judge the SERVICE process on this host by its own heartbeat, and kill it "
                        "when it is alive but silent so its supervisor restarts it (compose)")
    p = sub.add_parser("service", help="run one service in the foreground")
    p.add_argument("name")
    sub.add_parser("keys", help="print a new approval key pair for compose.env "
                   "(KODA_APPROVAL_SIGNING_KEY for the gateway, KODA_APPROVAL_VERIFY_KEY for actions)")
    p = sub.add_parser("schema", help="print (or --write) the tasks.json JSON Schema")
    p.add_argument("--write", action="store_true")
    p = sub.add_parser("site", help="sites that need a person: `site list`, `site clear SITE`")
    site = p.add_subparsers(dest="action", required=True)
    site.add_parser("list", help="sites whose login needs a person")
    site.add_parser("clear", help="let jobs for SITE log in again").add_argument("site")
    from koda import connect, logs_command, ops_commands, run_commands, task_commands

    for module in (task_commands, run_commands, ops_commands, logs_command, connect):
        COMMANDS.update(module.register(sub))
    return parser


COMMANDS = {
    "init": cmd_init, "doctor": cmd_doctor, "up": cmd_up, "down": cmd_down,
    "status": quiet_pipe(cmd_status), "health": cmd_health, "service": cmd_service, "schema": cmd_schema,
    "keys": cmd_keys, "site": cmd_site,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "service" and not argv[1].startswith("-"):
        # How every service process starts (supervisord, compose): skip building the parser
        # of every other command, whose modules would stay in each service's memory for nothing.
        sys.exit(cmd_service(argparse.Namespace(name=argv[1])))
    args = build_parser().parse_args(argv)
    if args.command != "service":
        # Commands report an unreachable bus in their own words, not as reconnect warnings.
        import logging

        logging.getLogger("koda.shared.bus").setLevel(logging.CRITICAL)
    sys.exit(COMMANDS[args.command](args))
