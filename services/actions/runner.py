"""Running one helper script in a clean environment holding only the secrets it declares.

The script's process gets a fixed minimal environment (PATH, LANG, HOME, a few KODA_* values) plus
the `.env` entries its manifest entry names, read from the file at run time. Nothing else from the
actions service's own environment reaches it, and the service never loads `.env` into its own
environment, so no other script (nor anything reading /proc/<pid>/environ) can see those values.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koda.shared.home import HomeLayout
from koda.shared.scripts import AUTH_FAILURE_EXIT, ScriptSpec

#: Output fragments (case-insensitive) that mean a site rejected the script's login or cookies.
KNOWN_AUTH_ERRORS = (
    "401 unauthorized",
    "403 forbidden",
    "session expired",
    "session has expired",
    "login required",
    "please log in",
    "invalid credentials",
    "not logged in",
)
#: Kept of each stream: results travel in 1 MiB messages; the tail is what says what went wrong.
MAX_STREAM_CHARS = 64_000
_PATH = "/usr/local/bin:/usr/bin:/bin"


class MissingSecret(Exception):
    """A secret the script declares is not in `.env`; carries its name, never a value."""

    def __init__(self, script: str, name: str) -> None:
        self.script, self.name = script, name
        super().__init__(f"script {script!r} needs {name}, which is not set in .env")


@dataclass(frozen=True)
class ScriptRun:
    """What one run of a script did. Streams are raw here: the caller redacts them."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def auth_failed(self, extra_patterns: list[str] | tuple[str, ...] = ()) -> bool:
        """Exit 77, or a failed run whose output carries a known auth error."""
        if self.exit_code == AUTH_FAILURE_EXIT:
            return True
        if self.ok:
            return False
        text = (self.stdout + "\n" + self.stderr).lower()
        return any(p.lower() in text for p in (*KNOWN_AUTH_ERRORS, *extra_patterns))


def script_environment(spec: ScriptSpec, layout: HomeLayout, env_file: dict[str, str],
                       extra: dict[str, str]) -> dict[str, str]:
    """The whole environment of the script's process: fixed values, its own secrets, `extra`."""
    env = {
        "PATH": _PATH,
        "LANG": "C.UTF-8",
        "HOME": str(layout.root),
        "KODA_HOME": str(layout.root),
        "KODA_DATA": str(layout.data),
        "PYTHONUNBUFFERED": "1",
    }
    if spec.site:
        env["KODA_SITE"] = spec.site
        env["KODA_COOKIES"] = str(layout.cookies / f"{spec.site}.json")
    env.update(extra)
    for name, default in spec.settings.items():
        if env_file.get(name) or default:
            env[name] = env_file.get(name) or default
    for name in spec.optional_secrets:
        if env_file.get(name):
            env[name] = env_file[name]
    for name in spec.secrets:
        if not env_file.get(name):  # the template's `NAME=` placeholders count as unset
            raise MissingSecret(spec.name, name)
        env[name] = env_file[name]
    return env


def resolve_command(spec: ScriptSpec, layout: HomeLayout) -> list[str]:
    """argv with a relative program path (`./x.sh`, `bin/x`) made absolute inside scripts/."""
    program = spec.command[0]
    if "/" in program and not Path(program).is_absolute():
        program = str((layout.scripts / program).resolve())
    return [program, *spec.command[1:]]


async def run_script(
    spec: ScriptSpec,
    layout: HomeLayout,
    env: dict[str, str],
    args: dict[str, Any],
    *,
    progress: Callable[[], Awaitable[None]] | None = None,
    progress_every: float = 10.0,
) -> ScriptRun:
    """Run the script in scripts/ with `args` as JSON on stdin, killing it at its timeout.

    The script gets its own process group, so a timeout or a cancellation kills whatever it
    started too. `progress` is called while it runs (to keep a JetStream delivery alive).
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *resolve_command(spec, layout),
        cwd=layout.scripts,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    communicate = asyncio.create_task(proc.communicate(json.dumps(args).encode()))
    timed_out = False
    try:
        deadline = started + spec.timeout_seconds
        while not communicate.done():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            await asyncio.wait({communicate}, timeout=min(progress_every, left))
            if not communicate.done() and progress is not None:
                await progress()
        if timed_out:
            _kill_group(proc.pid)
        out, err = await communicate
    except BaseException:
        _kill_group(proc.pid)
        communicate.cancel()
        raise
    return ScriptRun(
        exit_code=None if timed_out else proc.returncode,
        stdout=_tail(out.decode("utf-8", "replace")),
        stderr=_tail(err.decode("utf-8", "replace")),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(text: str) -> str:
    if len(text) <= MAX_STREAM_CHARS:
        return text
    return f"[... {len(text) - MAX_STREAM_CHARS} characters cut ...]\n" + text[-MAX_STREAM_CHARS:]
