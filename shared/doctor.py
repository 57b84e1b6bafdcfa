"""`koda doctor`: everything wrong with an agent home, one line per problem, file/line/field."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .configfile import load_config
from .doctor_reach import check_reach, check_settings_places
from .errors import ConfigError, ConfigProblem
from .home import LEARNINGS_CAP, HomeLayout
from .integrations import check_task_secrets
from .jsonpos import dotted, value_lines
from .scripts import McpServersFile, ScriptManifest
from .secrets import read_env_file
from .sites import load_sites
from .tasks import TasksFile, load_tasks

CLAUDE_CREDENTIALS = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")


def _line_of(path: Path, *keys: str | int) -> int | None:
    try:
        return value_lines(path.read_text(encoding="utf-8")).get(tuple(keys))
    except (OSError, ValueError):
        return None


def check_tasks(layout: HomeLayout) -> tuple[TasksFile | None, list[ConfigProblem]]:
    """Validate tasks.json, then what it refers to: skills and scripts in this home.

    References are checked on the raw JSON, so a missing skill is reported in the same pass as
    a bad cron elsewhere in the file.
    """
    problems: list[ConfigProblem] = []
    tasks: TasksFile | None = None
    try:
        tasks = load_tasks(layout.tasks)
    except ConfigError as exc:
        problems += exc.problems
    try:
        raw = json.loads(layout.tasks.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return tasks, problems
    manifest = _load_manifest(layout, problems)
    raw_tasks = raw.get("tasks") if isinstance(raw, dict) else None
    for i, task in enumerate(raw_tasks if isinstance(raw_tasks, list) else []):
        if not isinstance(task, dict):
            continue
        refs: list[tuple[tuple[str | int, ...], object]] = [(("tasks", i, "skill"), task.get("skill"))]
        steps = task.get("steps")
        for j, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                refs.append((("tasks", i, "steps", j, "skill"), step.get("skill")))
        for path, name in refs:
            if isinstance(name, str) and not layout.skill(name).is_file():
                problems.append(ConfigProblem(
                    layout.tasks, _line_of(layout.tasks, *path), dotted(path),
                    f"skill {name!r} not found at skills/{name}.md"))
        script = task.get("script")
        if isinstance(script, str) and (manifest is None or manifest.get(script) is None):
            known = ", ".join(s.name for s in manifest.scripts) if manifest else "none"
            problems.append(ConfigProblem(
                layout.tasks, _line_of(layout.tasks, "tasks", i, "script"), f"tasks[{i}].script",
                f"script {script!r} is not in scripts/manifest.json (known: {known})"))
    problems.sort(key=lambda p: (str(p.file), p.line or 0))
    return tasks, problems


def _load_manifest(layout: HomeLayout, problems: list[ConfigProblem]) -> ScriptManifest | None:
    if not layout.scripts_manifest.exists():
        return None
    try:
        manifest = load_config(layout.scripts_manifest, ScriptManifest)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    for i, spec in enumerate(manifest.scripts):
        exe = layout.scripts / spec.command[-1]
        if "/" not in spec.command[0] and len(spec.command) > 1 and not exe.exists():
            problems.append(ConfigProblem(
                layout.scripts_manifest, _line_of(layout.scripts_manifest, "scripts", i, "command"),
                f"scripts[{i}].command", f"{spec.command[-1]} not found in scripts/"))
        sites = _site_names(layout)
        if spec.site and sites is not None and spec.site not in sites:
            problems.append(ConfigProblem(
                layout.scripts_manifest, _line_of(layout.scripts_manifest, "scripts", i, "site"),
                f"scripts[{i}].site", f"site {spec.site!r} is not in sites.json: its cookies "
                "could not be refreshed after an auth failure"))
    return manifest


def _site_names(layout: HomeLayout) -> set[str] | None:
    try:
        return set(load_sites(layout.sites).sites)
    except ConfigError:
        return None  # sites.json's own problems are reported by check_home


def check_home(layout: HomeLayout, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    """Every problem with the home; empty when it is ready to run."""
    environ = dict(os.environ) if environ is None else environ
    problems: list[ConfigProblem] = []
    if not layout.root.is_dir():
        return [ConfigProblem(layout.root, None, "(home)", "does not exist; run `koda init`")]
    if not layout.soul.is_file() or not layout.soul.read_text(encoding="utf-8").strip():
        problems.append(ConfigProblem(layout.soul, None, "(file)",
                                      "missing or empty: the agent has no identity or rules"))
    tasks, task_problems = check_tasks(layout)
    problems += task_problems
    problems += check_reach(layout, tasks, _load_manifest(layout, []))
    problems += check_settings_places(layout)
    if layout.mcp_servers.exists():
        try:
            load_config(layout.mcp_servers, McpServersFile)
        except ConfigError as exc:
            problems += exc.problems
    try:
        load_sites(layout.sites)
    except ConfigError as exc:
        problems += exc.problems
    if layout.learnings.exists():
        count = len(layout.learnings.read_text(encoding="utf-8").splitlines())
        if count > LEARNINGS_CAP:
            problems.append(ConfigProblem(
                layout.learnings, LEARNINGS_CAP + 1, "(length)",
                f"{count} lines, over the cap of {LEARNINGS_CAP}: run the consolidate-learnings skill"))
    env_values: dict[str, str] = {}
    if layout.env.exists():
        mode = stat.S_IMODE(layout.env.stat().st_mode)
        if mode & 0o077:
            problems.append(ConfigProblem(layout.env, None, "(mode)",
                                          f"mode is {mode:04o}; run `chmod 600 {layout.env}`"))
        env_values = read_env_file(layout.env)
    problems += check_task_secrets(layout, env_values)
    if not any(environ.get(k) or env_values.get(k) for k in CLAUDE_CREDENTIALS):
        problems.append(ConfigProblem(
            layout.env, None, " or ".join(CLAUDE_CREDENTIALS),
            "no Claude credential in the environment or .env (an API key or `claude setup-token`)"))
    return problems


def problems_as_json(problems: list[ConfigProblem]) -> str:
    return json.dumps([{"file": str(p.file), "line": p.line, "field": p.field, "message": p.message}
                       for p in problems], indent=1)


#: Written by the gateway when its Discord link has a problem a person must fix (removed once
#: the bot connects with commands registered); read here because `koda doctor` cannot ask a
#: gateway that may not be running.
DISCORD_STATE = "discord.json"


def write_discord_state(state_dir: Path, problem: str | None, sync_error: str | None) -> None:
    path = state_dir / DISCORD_STATE
    if not problem and not sync_error:
        path.unlink(missing_ok=True)
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"problem": problem, "commands": sync_error}))
    os.replace(tmp, path)


def check_discord(state_dir: Path) -> list[ConfigProblem]:
    """The Discord problems the gateway last reported (a final gateway close such as 4014, a
    refused command sync), each with what to do."""
    path = state_dir / DISCORD_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [ConfigProblem(path, None, field, str(state[key]))
            for key, field in (("problem", "discord"), ("commands", "discord commands"))
            if state.get(key)]
