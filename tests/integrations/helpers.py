"""Running the home's integration scripts as the actions service runs them (its own runner: a
clean environment holding only the entry's secrets and settings, args on stdin), against fakes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import zlib
from pathlib import Path
from typing import Any

from koda.services.actions.manifest import load_manifest
from koda.services.actions.runner import (
    ScriptRun,
    resolve_command,
    run_script,
    script_environment,
    script_home,
)
from koda.shared.home import HomeLayout, init_home
from koda.shared.secrets import read_env_file
from koda.shared.settings import KodaSettings


def make_home(tmp_path: Path, env: dict[str, str]) -> HomeLayout:
    """A home from the template with these `.env` entries."""
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state")
    init_home(settings)
    layout = HomeLayout(settings.expanded_home())
    layout.env.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    layout.env.chmod(0o600)
    return layout


def _env(layout: HomeLayout, script: str, key: str) -> tuple[Any, dict[str, str]]:
    spec = load_manifest(layout).get(script)
    assert spec is not None, script
    extra = {"KODA_ACTION": spec.actions[0] if spec.actions else f"script.{script}",
             "KODA_IDEMPOTENCY_KEY": key}
    # A private HOME and working folder outside the home, as the actions service gives it.
    private = script_home(layout.root.parent / "state", spec)
    return spec, script_environment(spec, layout, read_env_file(layout.env), extra, private)


def run(layout: HomeLayout, script: str, args: dict[str, Any], key: str = "approval:k1") -> ScriptRun:
    """One run of a manifest script through the actions service's runner."""
    spec, env = _env(layout, script, key)
    return asyncio.run(run_script(spec, layout, env, args))


async def run_async(layout: HomeLayout, script: str, args: dict[str, Any],
                    key: str = "approval:k1") -> ScriptRun:
    spec, env = _env(layout, script, key)
    return await run_script(spec, layout, env, args)


def start_and_kill_when(layout: HomeLayout, script: str, args: dict[str, Any], key: str,
                        stalled: Any) -> int:
    """Start the script, wait until the fake holds its reply (`stalled` event), then SIGKILL it,
    as a crash of the actions service would cut it short. Returns the exit status."""
    import subprocess

    spec, env = _env(layout, script, key)
    proc = subprocess.Popen(resolve_command(spec, layout), cwd=env["HOME"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(args).encode())
    proc.stdin.close()
    assert stalled.wait(30), "the script never reached the stalled call"
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(10)


def output(run: ScriptRun) -> Any:
    assert run.ok, f"exit {run.exit_code}: {run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid little PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
