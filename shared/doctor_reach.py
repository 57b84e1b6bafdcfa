"""`koda doctor`'s checks of what enabled tasks rely on, and of where settings were put.

- A gated action kind (`social.post`) of an enabled task that no script's `actions` lists: an
  approval of it would go nowhere.
- A secret that a script an enabled task reaches (its `script`, or the handler of one of its
  gated kinds) needs and the home's `.env` lacks: the script would fail when it matters.
- `KODA_*` settings where Koda does not read them (the home's `.env`, a `.env` in the working
  directory) and unknown `KODA_*` names in the config file (a typo is silently ignored).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import ConfigProblem
from .home import HomeLayout
from .jsonpos import value_lines
from .scripts import ScriptManifest
from .settings import KodaSettings, config_file
from .tasks import TasksFile

#: An action kind, as opposed to a tool-name glob such as `mcp__youtube__*` or `Bash`.
ACTION_KIND = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)+$")
EXTRA_NAMES = {"KODA_CONFIG_FILE"}


def _line(path: Path, *keys: str | int) -> int | None:
    try:
        return value_lines(path.read_text(encoding="utf-8")).get(tuple(keys))
    except (OSError, ValueError):
        return None


def check_reach(layout: HomeLayout, tasks: TasksFile | None, manifest: ScriptManifest | None
                ) -> list[ConfigProblem]:
    if tasks is None:
        return []
    problems: list[ConfigProblem] = []
    raw_ids = _task_indexes(layout)
    for task in tasks.tasks:
        if not task.enabled:
            continue
        index = raw_ids.get(task.id)
        for g, kind in enumerate(task.gated):
            if not ACTION_KIND.match(kind) or kind.startswith("script."):
                continue
            handler = manifest.for_action(kind) if manifest else None
            if handler is None:
                problems.append(ConfigProblem(
                    layout.tasks, _line(layout.tasks, "tasks", index, "gated", g) if index is not None
                    else None, f"tasks[{index}].gated[{g}]",
                    f"no script in scripts/manifest.json lists action {kind!r} in its `actions`: "
                    "an approved one would fail. Add a script that handles it, or drop the kind"))
    # Missing secrets of the scripts a task reaches: shared/integrations.py (one check, with the
    # `koda connect` command that fixes each).
    return problems


def _task_indexes(layout: HomeLayout) -> dict[str, int]:
    try:
        raw = json.loads(layout.tasks.read_text(encoding="utf-8"))
        return {t["id"]: i for i, t in enumerate(raw["tasks"]) if isinstance(t, dict) and "id" in t}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _koda_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        name = line.strip().removeprefix("export ").split("=", 1)[0].strip()
        if name.startswith("KODA_") and "=" in line:
            out.append((n, name))
    return out


def check_settings_places(layout: HomeLayout, cwd: Path | None = None) -> list[ConfigProblem]:
    place = config_file()
    problems = []
    for path in {layout.env, (cwd or Path.cwd()) / ".env"}:
        for n, name in _koda_lines(path):
            problems.append(ConfigProblem(
                path, n, name, f"Koda does not read KODA_* settings from this file; put it in "
                f"{place} (or the environment)"))
    known = {f"KODA_{name.upper()}" for name in KodaSettings.model_fields} | EXTRA_NAMES
    for n, name in _koda_lines(place):
        if name not in known:
            problems.append(ConfigProblem(place, n, name, "not a Koda setting (a typo?); the "
                                          "settings are listed in the README"))
    return sorted(problems, key=lambda p: (str(p.file), p.line or 0))
