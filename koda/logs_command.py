"""`koda logs [SERVICE...] [-f] [-n N] [--json]`: the services' logs, one line each, coloured by
service like `pm2 logs`. Also what the foreground `koda up` streams.

Services log JSON lines to stderr, which supervisord keeps as `<state>/logs/<service>.err.log`
(stdout as `<service>.log`). Lines that are not JSON (NATS's own, a traceback) are shown as is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from koda.term import SERVICE_COLOURS, paint, quiet_pipe

LEVEL_COLOURS = {"warning": "yellow", "error": "red", "critical": "red", "debug": "grey"}
ENVELOPE = {"ts", "level", "service", "logger", "msg", "exc"}


def log_files(log_dir: Path, service: str) -> list[Path]:
    return [log_dir / f"{service}.err.log", log_dir / f"{service}.log"]


def all_services() -> list[str]:
    from koda.shared.settings import SERVICES

    return ["nats", *SERVICES]


def parse(line: str, service: str) -> dict[str, Any]:
    """A log line as a dict: the service's JSON, or the raw text under `msg`."""
    line = line.rstrip("\n")
    if line.startswith("{"):
        try:
            data = json.loads(line)
            if isinstance(data, dict):
                data.setdefault("service", service)
                return data
        except ValueError:
            pass
    return {"service": service, "msg": line, "raw": True}


def render(entry: dict[str, Any], width: int, colour: bool) -> str:
    service = str(entry.get("service", "?"))
    ts = str(entry.get("ts", ""))
    clock = ts[11:19] if len(ts) >= 19 else " " * 8
    level = str(entry.get("level", ""))
    prefix = paint(f"{service:<{width}} |", SERVICE_COLOURS.get(service, "bold"), colour)
    msg = str(entry.get("msg", ""))
    if entry.get("raw"):
        return f"{prefix} {msg}"
    extras = " ".join(f"{k}={_short(v)}" for k, v in entry.items() if k not in ENVELOPE)
    text = msg + (" " + paint(extras, "grey", colour) if extras else "")
    if level in LEVEL_COLOURS and level != "debug":
        text = paint(f"{level.upper()} ", LEVEL_COLOURS[level], colour) + text
    out = f"{prefix} {paint(clock, 'grey', colour)} {text}"
    if entry.get("exc"):
        out += "\n" + paint(str(entry["exc"]), "red", colour)
    return out


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:119] + "…"


def tail(path: Path, n: int) -> list[str]:
    """The last `n` lines of a file, reading only its end."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 64 * 1024, b""
            while size > 0 and data.count(b"\n") <= n:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-n:] if n else []


def recent(log_dir: Path, services: list[str], n: int) -> list[dict[str, Any]]:
    """The newest `n` entries over the services, oldest first (by their timestamps)."""
    entries = []
    for service in services:
        for path in log_files(log_dir, service):
            entries += [parse(line, service) for line in tail(path, n)]
    entries.sort(key=lambda e: str(e.get("ts", "")))
    return entries[-n:] if n else []


def follow(log_dir: Path, services: list[str], poll: float = 0.3,
           stop: Any = None) -> Iterator[dict[str, Any]]:
    """New entries as they are written (from now on); survives rotation and late files."""
    offsets: dict[Path, int] = {}
    for service in services:
        for path in log_files(log_dir, service):
            offsets[path] = path.stat().st_size if path.exists() else 0
    partial: dict[Path, str] = {}
    while stop is None or not stop():
        got = False
        for service in services:
            for path in log_files(log_dir, service):
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                start = offsets.get(path, 0)
                if size < start:  # rotated or truncated: read the new file from its start
                    start = 0
                if size == start:
                    continue
                with path.open("rb") as f:
                    f.seek(start)
                    chunk = f.read(size - start).decode("utf-8", "replace")
                offsets[path] = size
                text = partial.pop(path, "") + chunk
                lines = text.split("\n")
                if lines[-1]:
                    partial[path] = lines[-1]
                for line in lines[:-1]:
                    if line.strip():
                        got = True
                        yield parse(line, service)
        if not got:
            time.sleep(poll)


def cmd_logs(args: argparse.Namespace) -> int:
    from koda.cli import settings_from
    from koda.term import colour_on

    settings = settings_from(args)
    known = all_services()
    wanted = args.service or known
    unknown = [s for s in wanted if s not in known]
    if unknown:
        print(f"no service {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    log_dir = settings.log_dir()
    if not log_dir.is_dir():
        print(f"no logs yet in {log_dir}; start the stack with `koda up`", file=sys.stderr)
        return 1
    colour, width = colour_on(), max(len(s) for s in wanted)

    def show(entry: dict[str, Any]) -> None:
        print(json.dumps(entry) if args.json else render(entry, width, colour), flush=args.follow)

    for entry in recent(log_dir, wanted, args.lines):
        show(entry)
    if args.follow:
        try:
            for entry in follow(log_dir, wanted):
                show(entry)
        except KeyboardInterrupt:
            return 0
    return 0


def register(sub: Any) -> dict[str, Any]:
    p = sub.add_parser("logs", help="the services' logs, coloured by service (-f to follow)")
    p.add_argument("service", nargs="*", help="nats, scheduler, worker, actions, scraper, gateway, "
                                              "watchdog (default: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=40, help="how many recent lines first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return {"logs": quiet_pipe(cmd_logs)}
