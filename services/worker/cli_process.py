"""The Claude CLI dies with its worker.

The SDK starts the CLI as a plain child: when a worker is killed (`kill -9`, the OOM killer) the
CLI is re-parented to init and its session goes on, running tool calls a redelivered attempt
runs again and spending money no cap counts. So the CLI is started through a launcher that
sets the kernel's parent-death signal (`setpriv --pdeathsig KILL`, util-linux, present on every
Debian base): the kernel kills it the moment the worker's thread that started it is gone.

The CLI's own children (the sandbox's socat bridges, Bash tools, MCP servers) do not inherit
that signal, so where the host allows it the CLI also runs as process 1 of its own PID
namespace (`unshare --pid --fork --mount-proc --kill-child`): when it dies the kernel kills every process
in that namespace, the whole tree at once. Without that permission (an unprivileged container)
the CLI still dies with the worker and a warning says its helpers may not. A stop asked
politely (SIGTERM, SIGINT) still reaches the CLI through that chain.

The launcher is a small shell script in the state folder (outside the agent's reach), passed
to the SDK as `cli_path`.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)
LAUNCHER = "claude-launcher"
FORWARDER = "claude-signals"


def bundled_cli() -> Path | None:
    """The CLI the SDK would start: its bundled one, else `claude` on PATH."""
    spec = importlib.util.find_spec("claude_agent_sdk")  # found, not imported: it is heavy
    origin = spec.origin if spec else None
    bundled = Path(origin).parent / "_bundled" / "claude" if origin else None
    if bundled is not None and bundled.is_file():
        return bundled
    found = shutil.which("claude")
    return Path(found) if found else None


@functools.cache
def launcher(state_dir: Path, cli: Path | None = None) -> str | None:
    """The path of the launcher of `cli` (the SDK's own by default; written once per process),
    or None when it cannot be made: then the SDK starts the CLI itself and a killed worker may
    leave it running (logged)."""
    setpriv, cli = shutil.which("setpriv"), cli or bundled_cli()
    if setpriv is None or cli is None:
        log.warning("setpriv (util-linux) or the Claude CLI not found: a killed worker's CLI "
                    "would outlive it")
        return None
    folder = state_dir / "run"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, body in _scripts(setpriv, _namespace(), cli, folder).items():
            tmp = folder / f".{name}.{os.getpid()}"
            tmp.write_text(body, encoding="utf-8")
            tmp.chmod(0o700)
            os.replace(tmp, folder / name)
    except OSError as exc:
        log.warning("cannot write the CLI launcher in %s (%s): a killed worker's CLI would "
                    "outlive it", folder, exc)
        return None
    return str(folder / LAUNCHER)


HEAD = "#!/bin/sh\n# Written by the Koda worker: the CLI and its children get SIGKILL when the " \
       "worker dies.\n"


def _scripts(setpriv: str, namespace: list[str], cli: Path, folder: Path) -> dict[str, str]:
    """The launcher's files by name.

    Without a namespace the launcher is one `exec`: the CLI is the SDK's child and gets its
    signals. With one, `unshare --fork` sits between them and ignores SIGTERM, so the SDK's
    polite stop (SIGTERM, then SIGKILL 5 s later) always ended in SIGKILL: the CLI never
    flushed its session file and each close of a busy session took 10 s. So a shell (the
    forwarder) stands in front and passes SIGTERM and SIGINT on to the CLI, unshare's child.
    The forwarder carries the parent-death signal for the worker, unshare one for the
    forwarder.
    """
    deathsig = [setpriv, "--pdeathsig", "KILL", "--"]
    if not namespace:
        return {LAUNCHER: HEAD + f'exec {shlex.join([*deathsig, str(cli)])} "$@"\n'}
    forwarder = folder / FORWARDER
    return {
        FORWARDER: HEAD + (
            # A background job's stdin is /dev/null in a non-interactive shell: fd 3 carries
            # the real one through. `wait` returns early when a trapped signal arrives.
            "exec 3<&0\n"
            f'{shlex.join([*deathsig, *namespace, str(cli)])} "$@" <&3 3<&- &\n'
            "ns=$!\n"
            "exec 3<&-\n"
            'forward() { kill -"$1" $(cat /proc/$ns/task/$ns/children 2>/dev/null) 2>/dev/null; }\n'
            "trap 'forward TERM' TERM\n"
            "trap 'forward INT' INT\n"
            "while :; do wait $ns; rc=$?; kill -0 $ns 2>/dev/null || exit $rc; done\n"),
        LAUNCHER: HEAD + f'exec {shlex.join([*deathsig, "/bin/sh", str(forwarder)])} "$@"\n',
    }


def _namespace() -> list[str]:
    """`unshare` arguments that make the CLI the init of its own PID namespace, if allowed here."""
    unshare = shutil.which("unshare")
    if unshare:
        # --mount-proc: a /proc of the new namespace, or the CLI's sandbox (bubblewrap) looks for
        # its own pid in the host's /proc and every sandboxed command fails.
        argv = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child=KILL", "--"]
        try:
            probe = subprocess.run([*argv, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return argv
    log.warning("cannot start the CLI in a PID namespace of its own (unshare --pid refused): "
                "a killed worker's CLI dies with it, but helpers the CLI started may not")
    return []
