"""Every file Koda writes on the agent's behalf refuses links: a link planted at the file or at
any folder on its way (as the agent's shell can) changes nothing outside, and says why."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from koda.services.scraper.cookies import CookieJar
from koda.services.worker.records import append_daily_log, write_record
from koda.services.worker.tools import KodaTools
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout, init_home
from koda.shared.run_record import RunRecord
from koda.shared.safe_write import UnsafePath, append_text, read_bytes, write_file
from koda.shared.secrets import Redactor
from koda.shared.settings import KodaSettings
from koda.shared.tasks import Task

RUN = "t.m1"


@pytest.fixture
def home(settings: KodaSettings) -> HomeLayout:
    init_home(settings)
    return HomeLayout(settings.expanded_home())


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder and a file outside the home that a planted link points at."""
    target = tmp_path / "outside"
    target.mkdir()
    (target / "victim.txt").write_text("original\n")
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def record() -> RunRecord:
    return RunRecord(run_id=RUN, task="t", trigger="manual", outcome="done", started_at=datetime.now(UTC))


def tools(bus: Bus, home: HomeLayout) -> KodaTools:
    return KodaTools(bus, home, Task(id="t", prompt="x"), RUN, Redactor([]), 5.0)


#: (name, home-relative paths where a link can be planted, the write) for every writer.
Writer = Callable[[HomeLayout, Bus], Any]


async def _draft(home: HomeLayout, bus: Bus) -> Any:
    return await tools(bus, home).save_draft({"name": "post.md", "content": "PWNED"})


async def _learning(home: HomeLayout, bus: Bus) -> Any:
    return await tools(bus, home).record_learning({"line": "PWNED"})


async def _record(home: HomeLayout, bus: Bus) -> Any:
    return write_record(home, record())


async def _daily(home: HomeLayout, bus: Bus) -> Any:
    return append_daily_log(home, record())


async def _cookies(home: HomeLayout, bus: Bus) -> Any:
    return CookieJar(home.cookies, "site").save({"cookies": ["PWNED"]})


async def _init(home: HomeLayout, bus: Bus, settings: KodaSettings | None = None) -> Any:
    assert settings is not None
    return init_home(settings)


DAY = f"{datetime.now(UTC):%Y-%m-%d}"
CASES: list[tuple[str, str, Any]] = [
    # The file itself, then each folder on its way.
    ("draft", f"data/drafts/{RUN}/post.md", _draft),
    ("draft", f"data/drafts/{RUN}", _draft),
    ("draft", "data/drafts", _draft),
    ("draft", "data", _draft),
    ("learning", "learnings.md", _learning),
    ("record", f"data/runs/{RUN}.json", _record),
    ("record", "data/runs", _record),
    ("daily log", f"data/daily-logs/{DAY}.md", _daily),
    ("daily log", "data/daily-logs", _daily),
    ("cookies", "data/cookies/site.json", _cookies),
    ("init", "soul.md", _init),
    ("init", "scripts/manifest.json", _init),
    ("init", "scripts", _init),
    ("init", "skills", _init),
    ("init", ".koda-init.json", _init),
    ("init", ".env", _init),
    ("init", "data/cookies", _init),
]


@pytest.mark.parametrize(("writer", "planted", "write"), CASES, ids=[f"{w}:{p}" for w, p, _ in CASES])
async def test_a_planted_link_changes_nothing_outside(
        writer: str, planted: str, write: Any, home: HomeLayout, outside: Path, bus: Bus,
        settings: KodaSettings) -> None:
    link = home.root / planted
    if link.is_dir() and not link.is_symlink():
        os.rename(link, link.with_name(link.name + ".moved"))
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    # A file link points at the victim file; a folder link at the outside folder.
    is_file = "." in Path(planted).name and not planted.endswith(RUN)
    link.symlink_to(outside / "victim.txt" if is_file else outside)
    before = snapshot(outside)
    if write is _init:
        with pytest.raises(UnsafePath, match="symbolic link"):
            await _init(home, bus, settings)
    else:
        try:
            result = await write(home, bus)
        except UnsafePath as exc:
            assert "symbolic link" in str(exc) and planted.split("/")[0] in str(exc)
        else:  # the koda tools answer the model with an error instead of raising
            assert isinstance(result, dict) and result.get("is_error"), result
            assert "link" in result["content"][0]["text"]
    assert snapshot(outside) == before, f"{writer} wrote through a link at {planted}"
    assert link.is_symlink()  # refused, not replaced


def test_the_primitive_refuses_escapes_and_odd_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(ValueError):
            write_file(root, bad, "x")
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafePath, match="not a regular file"):
        append_text(root, "pipe", "x")
    with pytest.raises(UnsafePath, match="not a regular file"):
        read_bytes(root, "pipe")  # refused at once, not blocked on the fifo
    (root / "kept.py").write_text("original\n")
    os.link(root / "kept.py", root / "learnings.md")
    with pytest.raises(UnsafePath, match="other hard links"):
        append_text(root, "learnings.md", "x")
    assert (root / "kept.py").read_text() == "original\n"
    (root / "dir").mkdir()
    with pytest.raises(UnsafePath, match="not a regular file"):
        write_file(root, "dir", "x")


def test_writes_are_atomic_and_keep_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = write_file(root, "a/b/secret.json", json.dumps({"k": 1}), mode=0o600, folder_mode=0o700)
    assert json.loads(path.read_text()) == {"k": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert (root / "a").stat().st_mode & 0o777 == 0o700
    write_file(root, "a/b/secret.json", "{}", mode=0o600)
    assert [p.name for p in (root / "a" / "b").iterdir()] == ["secret.json"]  # no temp file left
