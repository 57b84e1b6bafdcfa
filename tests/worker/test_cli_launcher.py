"""The launcher the worker starts the Claude CLI through (its own PID namespace, death with the
worker) passes the CLI its input and output and a polite stop.

The SDK stops a CLI with SIGTERM, then SIGKILL 5 s later. Through `unshare --fork`, which
ignores SIGTERM, every stop used to end in SIGKILL after 10 s: the CLI never flushed its session
file. A stand-in CLI (a shell script) shows what the real one would see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from koda.services.worker.cli_process import _namespace, launcher

STAND_IN = """#!/bin/sh
trap 'echo "got TERM" > "$MARK"; exit 7' TERM
echo "args: $*"
read -r line
echo "read: $line"
sleep 60 &
wait
"""


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    cli = tmp_path / "cli"
    cli.write_text(STAND_IN)
    cli.chmod(0o755)
    path = launcher.__wrapped__(tmp_path / "state", cli)
    assert path is not None
    mark = tmp_path / "mark"
    with subprocess.Popen([path, "--print", "x y"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "MARK": str(mark)}) as proc:
        yield proc, mark
        proc.kill()


def test_the_cli_gets_its_arguments_stdin_and_a_polite_stop(
        launched: tuple[subprocess.Popen[str], Path]) -> None:
    proc, mark = launched
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline() == "args: --print x y\n"
    proc.stdin.write("hello\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "read: hello\n"

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=8)
    took = time.monotonic() - started
    assert mark.read_text() == "got TERM\n", "SIGTERM never reached the CLI"
    assert code == 7, f"the launcher did not pass the CLI's exit code on: {code}"
    assert took < 3, f"a polite stop took {took:.1f}s"


@pytest.mark.skipif(not _namespace(), reason="this host refuses `unshare --pid`: no namespace "
                    "to test (the launcher is then a plain exec, tested above)")
def test_the_cli_runs_as_the_init_of_its_own_pid_namespace(tmp_path: Path) -> None:
    cli = tmp_path / "cli"
    cli.write_text("#!/bin/sh\necho \"pid $$\"\n")
    cli.chmod(0o755)
    path = launcher.__wrapped__(tmp_path / "state", cli)
    assert path is not None
    out = subprocess.run([path], capture_output=True, text=True, timeout=20, check=True)
    assert out.stdout == "pid 1\n"
