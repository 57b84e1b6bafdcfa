"""Turning a task on or off in tasks.json, for `koda enable|disable` and the console.

The file is the source of truth (the scheduler hot-reloads it), so the change is an edit of it:
the JSON is re-written with the same indentation, atomically (a temporary file in the same
folder, then a rename), and only if the result still validates.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import ConfigError, KodaError
from .tasks import parse_tasks


class TaskEditError(KodaError):
    """The file cannot be edited: unreadable, invalid, read-only, or no such task."""


def set_enabled(path: Path, task_id: str, enabled: bool) -> bool:
    """Set `enabled` on the task; returns False when it already had that value."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TaskEditError(f"{path}: {exc.strerror or exc}") from exc
    try:
        parse_tasks(text, path)
    except ConfigError as exc:
        raise TaskEditError(f"{path} has problems; fix them first: {exc}") from exc
    data = json.loads(text)
    found = next((t for t in data.get("tasks", []) if isinstance(t, dict) and t.get("id") == task_id),
                 None)
    if found is None:
        raise TaskEditError(f"no task {task_id!r} in {path}")
    if bool(found.get("enabled", True)) == enabled:
        return False
    found["enabled"] = enabled
    indent_match = re.search(r"\n( +)\S", text)
    indent = len(indent_match.group(1)) if indent_match else 2
    new = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    parse_tasks(new, path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TaskEditError(f"cannot write {path}: {exc.strerror or exc} "
                            "(in compose the gateway mounts the home read-only: use `koda enable`)"
                            ) from exc
    return True
