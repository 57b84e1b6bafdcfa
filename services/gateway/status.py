"""What the console and `/koda status` show: services, tasks, runs, read from the bus and home.

Everything here only reads. Run records are the worker's `RunRecord` (shared/run_record.py),
artifacts are files under `data/drafts/<run id>/`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.js.errors import KeyNotFoundError, NoKeysError

from koda.shared import cron
from koda.shared.bus import Bus
from koda.shared.controls import tasks_in_force
from koda.shared.cron_words import describe
from koda.shared.health import read_heartbeats
from koda.shared.home import HomeLayout
from koda.shared.messages import AdmissionRecord, LimitsRecord, RunLedgerEntry, SchedulerFire
from koda.shared.run_record import record_path
from koda.shared.settings import SERVICES

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
MAX_FILE_BYTES = 256 * 1024


@dataclass
class ServiceRow:
    name: str
    instances: int
    age_s: float | None
    status: str
    pid: int | None = None
    uptime_s: float | None = None
    restarts: int | None = None
    detail: str = ""


@dataclass
class TaskRow:
    id: str
    cron: str | None
    enabled: bool
    next_fire: datetime | None
    last_fire: datetime | None
    last_run: RunLedgerEntry | None
    paused_by: str | None
    gated: list[str] = field(default_factory=list)
    schedule: str = "manual only"
    zone: str = "UTC"
    pause_reason: str = ""
    priority: str = "normal"
    admission: AdmissionRecord | None = None  # the worker's last decision for the task


async def services(bus: Bus, now: datetime | None = None) -> list[ServiceRow]:
    """One row per known service: live instances and the age of the newest heartbeat."""
    now = now or datetime.now(UTC)
    beats = await read_heartbeats(bus)
    restarts = _restarts(bus)
    procs = await asyncio.to_thread(_supervised, bus)
    rows = [await _nats_row(bus, restarts)]
    for name in SERVICES:
        mine = sorted((b for b in beats if b.service == name), key=lambda b: b.at, reverse=True)
        age = min(((now - b.at).total_seconds() for b in mine), default=None)
        fresh = age is not None and age < bus.settings.heartbeat_ttl
        status = (mine[0].status if len(mine) == 1 else "ok") if fresh else "down"
        newest = mine[0] if mine else None
        rows.append(ServiceRow(
            name, len(mine), None if age is None else max(0.0, age), status,
            pid=newest.pid if newest else None,
            uptime_s=(now - newest.started_at).total_seconds() if newest and fresh else None,
            restarts=restarts.get(name), detail=newest.detail if newest else ""))
    for row in rows:  # the local supervisor knows every process, NATS included
        info = procs.get(row.name)
        if info and info.get("statename") == "RUNNING":
            row.pid = row.pid or int(info["pid"])
            row.uptime_s = row.uptime_s or float(info["now"] - info["start"])
    return rows


def _supervised(bus: Bus) -> dict[str, dict[str, Any]]:
    """supervisord's view of its programs when it runs here (locally); nothing in compose."""
    sock = bus.settings.expanded_state() / "supervisor.sock"
    if not sock.exists():
        return {}
    try:
        from koda.shared.supervision import process_status

        return process_status(bus.settings)
    except Exception:
        return {}


def _restarts(bus: Bus) -> dict[str, int]:
    """Restart counts the local supervisor's listener keeps (absent in compose: Prometheus has
    them there as koda_service_restarts_total)."""
    try:
        data = json.loads(bus.settings.restarts_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: int(v.get("restarts", 0)) for k, v in data.items() if isinstance(v, dict)}


async def _nats_row(bus: Bus, restarts: dict[str, int]) -> ServiceRow:
    """NATS itself: up while this connection is, with JetStream's own account numbers."""
    nc = bus.nc
    if not nc.is_connected:
        return ServiceRow("nats", 0, None, "down", restarts=restarts.get("nats"))
    version = nc.connected_server_version
    detail = f"server {version.major}.{version.minor}.{version.patch}"
    try:
        info = await bus.js.account_info()
        detail += (f", {info.streams} streams, {info.storage / 1e6:.1f} MB stored")
    except Exception as exc:
        detail += f", JetStream: {exc}"
    return ServiceRow("nats", 1, 0.0, "ok", restarts=restarts.get("nats"), detail=detail)


async def limits(bus: Bus) -> LimitsRecord:
    raw = await _kv_json(bus, "limits", "state")
    try:
        return LimitsRecord.from_bytes(raw) if raw else LimitsRecord()
    except ValueError:
        return LimitsRecord()


async def _kv_json(bus: Bus, bucket: str, key: str) -> bytes | None:
    try:
        entry = await bus.kv[bucket].get(key)
    except KeyNotFoundError:
        return None
    return entry.value or None


async def ledger(bus: Bus) -> list[RunLedgerEntry]:
    """The `runs` KV, newest first."""
    kv = bus.kv["runs"]
    try:
        keys = await kv.keys()
    except NoKeysError:
        return []
    out = []
    for key in keys:
        raw = await _kv_json(bus, "runs", key)
        if raw:
            try:
                out.append(RunLedgerEntry.from_bytes(raw))
            except ValueError:
                continue
    return sorted(out, key=lambda e: e.updated_at, reverse=True)


async def tasks(bus: Bus, home: HomeLayout, now: datetime | None = None
                ) -> tuple[list[TaskRow], str | None]:
    """Every task with its next fire, last fire, last run and pause; plus a tasks.json error.
    A broken file gives the error and the last good version's tasks (still in force)."""
    now = now or datetime.now(UTC)
    parsed, error, _ = await tasks_in_force(bus, home, bus.settings.expanded_state())
    if parsed is None:
        return [], error
    runs = await ledger(bus)
    rows = []
    for task in parsed.tasks:
        spec = task.cron_spec()
        next_fire = (cron.next_fire(spec, now, task.zone(parsed.timezone))
                     if spec and task.enabled else None)
        fire_raw = await _kv_json(bus, "scheduler", f"fire.{task.id}")
        pause_raw = await _kv_json(bus, "scheduler", f"pause.{task.id}")
        pause = json.loads(pause_raw) if pause_raw else None
        admission_raw = await _kv_json(bus, "limits", f"admission.{task.id}")
        zone = task.timezone or parsed.timezone
        rows.append(TaskRow(
            id=task.id, cron=task.cron, enabled=task.enabled, next_fire=next_fire,
            last_fire=SchedulerFire.from_bytes(fire_raw).last_fire if fire_raw else None,
            last_run=next((r for r in runs if r.task == task.id), None),
            paused_by=pause.get("paused_by") if pause else None, gated=list(task.gated),
            schedule=describe(spec, zone) if spec else "manual only", zone=zone,
            pause_reason=str(pause.get("reason") or "") if pause else "",
            priority=task.priority,
            admission=_admission(admission_raw)))
    return rows, error


def _admission(raw: bytes | None) -> AdmissionRecord | None:
    """The worker's last admission record; None when there is none or it cannot be read (the
    page shows the task without it)."""
    try:
        return AdmissionRecord.from_bytes(raw) if raw else None
    except ValueError:
        return None


def config_problems(home: HomeLayout) -> list[str]:
    """What `koda doctor` finds in the home, one line each (cheap: files only)."""
    from koda.shared.doctor import check_home

    try:
        return [str(p) for p in check_home(home)]
    except Exception as exc:  # a check that breaks must not take the page down
        return [f"the config check failed: {type(exc).__name__}: {exc}"]


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def read_text(path: Path) -> str:
    """A file's text for display, cut at MAX_FILE_BYTES; binary files are described, not shown."""
    data = path.read_bytes()[:MAX_FILE_BYTES]
    if b"\0" in data[:4096]:
        return f"(binary file, {path.stat().st_size} bytes)"
    return data.decode("utf-8", "replace")


def run_artifacts(home: HomeLayout, run_id: str) -> list[str] | None:
    """The names of a run's artifacts (`data/drafts/<run id>/`); None when the run left neither
    a record nor drafts."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        return None
    drafts = home.drafts / run_id
    if not record_path(home.runs, run_id).is_file() and not drafts.is_dir():
        return None
    return ([p.relative_to(drafts).as_posix() for p in sorted(drafts.rglob("*"))
             if p.is_file()] if drafts.is_dir() else [])


def draft_file(home: HomeLayout, artifact: str | None) -> Path | None:
    """The file an approval's artifact names (`data/drafts/...`, relative to the home), if it is
    inside `data/drafts/`: nothing else in the home (`.env`, cookies) is ever shown."""
    if not artifact:
        return None
    path = Path(artifact)
    path = path if path.is_absolute() else home.root / path
    if not _inside(home.drafts, path) or not path.is_file():
        return None
    return path.resolve()


def preview(path: Path, chars: int = 600) -> str:
    text = read_text(path)
    return text if len(text) <= chars else text[: chars - 1] + "…"


def artifact_path(home: HomeLayout, run_id: str, name: str) -> Path | None:
    """The artifact file `name` of a run, or None if it is not inside the run's drafts folder."""
    if not RUN_ID.match(run_id) or ".." in run_id:
        return None
    drafts = home.drafts / run_id
    path = drafts / name
    if not path.is_file() or not _inside(drafts, path):
        return None
    return path
