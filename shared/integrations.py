"""Which `.env` entries each third-party integration uses, and which enabled task lacks them.

`koda connect SERVICE` asks for one service's entries; `koda doctor` reports an enabled task whose
scripts (its `script`, the scripts performing its `gated` action kinds, and the scripts its
prompts or skill name) miss a secret or a required setting, with the command that fixes it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .configfile import load_config
from .errors import ConfigError, ConfigProblem
from .home import HomeLayout
from .scripts import ScriptManifest, ScriptSpec
from .tasks import Task, TasksFile, load_tasks

#: service -> the `.env` entries `koda connect` writes for it (settings included).
SERVICES: dict[str, tuple[str, ...]] = {
    "bluesky": ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD"),
    "x": ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"),
    "wordpress": ("WORDPRESS_URL", "WORDPRESS_USER", "WORDPRESS_APP_PASSWORD"),
    "ghost": ("GHOST_URL", "GHOST_ADMIN_API_KEY"),
    "airtable": ("AIRTABLE_TOKEN", "AIRTABLE_BASE_ID"),
    "youtube": ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "YOUTUBE_REFRESH_TOKEN"),
}


def service_of(name: str) -> str | None:
    return next((s for s, names in SERVICES.items() if name in names), None)


def _fix(names: list[str]) -> str:
    services = sorted({s for n in names if (s := service_of(n))})
    if services:
        return "run " + " or ".join(f"`koda connect {s}`" for s in services)
    return "add " + ", ".join(names) + " to .env"


def scripts_of(task: Task, manifest: ScriptManifest, layout: HomeLayout) -> list[ScriptSpec]:
    """The scripts an enabled task will run, as far as its definition says."""
    found: dict[str, ScriptSpec] = {}
    if task.script and (spec := manifest.get(task.script)):
        found[spec.name] = spec
    for kind in task.gated:
        if (spec := manifest.for_action(kind)) is not None:
            found[spec.name] = spec
    texts = [task.prompt or "", *(s.prompt for s in task.steps or [])]
    for skill in [task.skill, *(s.skill for s in task.steps or [])]:
        if skill:
            try:
                texts.append(layout.skill(skill).read_text(encoding="utf-8"))
            except OSError:
                pass
    text = "\n".join(texts)
    for spec in manifest.scripts:
        if re.search(rf"(?<![\w-]){re.escape(spec.name)}(?![\w-])", text):
            found.setdefault(spec.name, spec)
    return list(found.values())


def check_task_secrets(layout: HomeLayout, env: dict[str, str]) -> list[ConfigProblem]:
    """One problem per enabled task and script that would fail for want of a `.env` entry."""
    try:
        tasks: TasksFile = load_tasks(layout.tasks)
        manifest = (load_config(layout.scripts_manifest, ScriptManifest)
                    if layout.scripts_manifest.exists() else ScriptManifest())
    except ConfigError:
        return []  # reported by the file checks
    problems: list[ConfigProblem] = []
    for task in tasks.tasks:
        if not task.enabled:
            continue
        for spec in scripts_of(task, manifest, layout):
            missing = [n for n in spec.secrets if not env.get(n)]
            missing += [n for n, default in spec.settings.items() if not default and not env.get(n)]
            if spec.optional_secrets and not any(env.get(n) for n in spec.optional_secrets):
                services = sorted({s for n in spec.optional_secrets if (s := service_of(n))})
                problems.append(_problem(layout, " or ".join(spec.optional_secrets[:2]) + " or ...",
                                         task, spec, "none of its services is connected: run "
                                         + " or ".join(f"`koda connect {s}`" for s in services)))
            if missing:
                problems.append(_problem(layout, ", ".join(missing), task, spec,
                                         f"needs {', '.join(missing)}, not set in "
                                         f".env: {_fix(missing)}"))
    return problems


def _problem(layout: HomeLayout, field: str, task: Task, spec: ScriptSpec, message: str) -> ConfigProblem:
    return ConfigProblem(Path(layout.env), None, field,
                         f"enabled task {task.id!r} runs script {spec.name!r}, which {message}")
