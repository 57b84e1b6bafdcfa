"""Running one helper script in a clean environment holding only the secrets it declares.

The script's process gets a fixed minimal environment (PATH, LANG, HOME, a few KODA_* values) plus
the `.env` entries its manifest entry names, read from the file at run time. Nothing else from the
actions service's own environment reaches it, and the service never loads `.env` into its own
environment, so no other script (nor anything reading /proc/<pid>/environ) can see those values.

Nothing the agent can write runs with those secrets: HOME and the working folder are a private
folder in the state folder (not the agent home, where it could plant `.local/lib/python*/site-
packages/usercustomize.py`, a `.pth`, `.npmrc` or `.node_modules`); Python runs isolated (`-I`
when the command names the interpreter, and PYTHONNOUSERSITE/PYTHONSAFEPATH for a script started
by its shebang); no PYTHON*/NODE_* variable is passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koda.shared.errors import KodaError
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
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


class MissingSecret(KodaError):
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


def script_home(state_dir: Path, spec: ScriptSpec) -> Path:
    """The script's private HOME and working folder, outside the agent's reach (created 0700)."""
    home = state_dir / "script-homes" / spec.name
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def script_environment(spec: ScriptSpec, layout: HomeLayout, env_file: dict[str, str],
                       extra: dict[str, str], private_home: Path) -> dict[str, str]:
    """The whole environment of the script's process: fixed values, its own secrets, `extra`."""
    env = {
        "PATH": _PATH,
        "LANG": "C.UTF-8",
        "HOME": str(private_home),
        "KODA_HOME": str(layout.root),
        "KODA_DATA": str(layout.data),
        "PYTHONUNBUFFERED": "1",
        # A script started by its shebang cannot be given -I: the same isolation by variable.
        "PYTHONNOUSERSITE": "1",
        "PYTHONSAFEPATH": "1",
    }
    if spec.site:
        env["KODA_SITE"] = spec.site
        env["KODA_COOKIES"] = str(layout.cookies / f"{spec.site}.json")
    fixed = set(env)
    for name in [*extra, *spec.settings, *spec.optional_secrets, *spec.secrets]:
        # The interpreter's and the loader's own variables would undo the isolation above.
        if name.startswith(("PYTHON", "NODE_", "LD_")) and name not in fixed:
            raise ValueError(f"{name} may not be passed to a script")
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
    """argv for running outside scripts/: a relative program path (`./x.sh`, `bin/x`) and any
    argument naming a file in scripts/ (`python3 post.py`) made absolute, and `-I` after a
    Python interpreter (no user site, no PYTHON* variables, no script folder on sys.path)."""
    program, *rest = spec.command
    if "/" in program and not Path(program).is_absolute():
        program = str((layout.scripts / program).resolve())
    args = [str(layout.scripts / a) if not a.startswith("-") and not Path(a).is_absolute()
            and ".." not in Path(a).parts and (layout.scripts / a).is_file() else a for a in rest]
    if _PYTHON.match(Path(program).name):
        args = ["-I", *args]
    return [program, *args]


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
    # A folder the agent cannot write: nothing it planted is picked up from the working folder.
    workdir = Path(env["HOME"])
    proc = await asyncio.create_subprocess_exec(
        *resolve_command(spec, layout),
        cwd=workdir,
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
        _close_pipes(proc)
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


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Close the pipes of a script run cut short now: nobody reads them to their end any more, so
    asyncio would keep them open until garbage collection (asyncio has no public way; its
    transport's `close()` is what `communicate()` would have led to)."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def _tail(text: str) -> str:
    if len(text) <= MAX_STREAM_CHARS:
        return text
    return f"[... {len(text) - MAX_STREAM_CHARS} characters cut ...]\n" + text[-MAX_STREAM_CHARS:]
