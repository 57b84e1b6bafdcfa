"""The sandbox probe uses the CLI's real bubblewrap flags, and a worker where the sandbox cannot
run refuses agent runs (each fails with the reason, one alert) instead of running them bare.

"Where the sandbox cannot run" is made real, not mocked: the worker runs inside an outer
bubblewrap whose /proc has a path masked over, as Docker masks /proc/acpi, /proc/kcore and
others by default. There a new procfs cannot be mounted, so the CLI's `--proc /proc` fails while
the old probe (`bwrap --ro-bind / / true`) still passes. Docker itself is not run here (the
container image test is another issue's job); compose.yaml is checked statically.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from koda.services.worker.options import BWRAP_PROBE, sandbox_problem, scrub_available
from koda.shared.bus import Bus
from koda.shared.home import init_home
from koda.shared.settings import SOURCE_DIR, KodaSettings
from tests.fake_anthropic import API_KEY, FakeAnthropic, Text
from tests.worker.conftest import Events, publish_run, run_request, write_tasks

needs_bwrap = pytest.mark.skipif(not scrub_available(), reason="needs bubblewrap and socat")
#: An outer sandbox like a container with Docker's masked /proc paths (network shared).
MASKED_PROC = ["bwrap", "--unshare-user", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/",
               "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/proc/acpi"]
PROBE = ("from koda.services.worker.options import sandbox_problem; "
         "print('PROBLEM', sandbox_problem())")


def cli_binary() -> Path:
    import claude_agent_sdk

    return Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def test_the_probe_passes_the_flags_the_bundled_cli_passes() -> None:
    """Each namespace and mount flag the CLI gives bwrap for a sandboxed command is probed."""
    with open(cli_binary(), "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--proc", "--dev", "--cap-drop",
                     "--new-session", "--die-with-parent"):
            assert data.find(f'"{flag}"'.encode()) != -1, f"the CLI no longer passes {flag}"
            assert flag in BWRAP_PROBE


@needs_bwrap
def test_the_probe_fails_where_the_clis_sandbox_fails_and_the_old_probe_passed(tmp_path: Path) -> None:
    assert sandbox_problem() is None  # on this machine the sandbox runs
    old = subprocess.run([*MASKED_PROC, "bwrap", "--ro-bind", "/", "/", "true"], capture_output=True)
    assert old.returncode == 0, old.stderr  # the old probe would have said "fine"
    new = subprocess.run([*MASKED_PROC, "--bind", str(tmp_path), str(tmp_path), sys.executable, "-c", PROBE],
                         capture_output=True, text=True, cwd=tmp_path)
    assert "PROBLEM bubblewrap cannot create the sandbox's namespaces here" in new.stdout, new
    assert "proc" in new.stdout and "KODA_CLAUDE_SANDBOX=false" in new.stdout


class MaskedWorker:
    """The worker as a real process inside the masked-/proc outer sandbox."""

    def __init__(self, settings: KodaSettings, root: Path, **extra_env: str) -> None:
        env = {**os.environ, "KODA_HOME": str(settings.home), "KODA_STATE_DIR": str(settings.state_dir),
               "KODA_NATS_URL": settings.nats_url, "KODA_PORT_BASE": str(settings.port_base),
               "ANTHROPIC_BASE_URL": settings.anthropic_base_url or "", "ANTHROPIC_API_KEY": API_KEY,
               **extra_env}
        self.log = root / "worker.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*MASKED_PROC, "--bind", str(root), str(root),
                                          sys.executable, "-m", "koda.services.worker"],
                                         env=env, stdout=out, stderr=out, start_new_session=True, cwd=root)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(script=lambda call: Text("did it")) as fake:
        yield fake


@pytest.fixture
async def events_seen(bus: Bus) -> Any:
    collected = Events()
    sub = await bus.nc.subscribe("koda.events.>", cb=collected.on_msg)
    yield collected
    await sub.unsubscribe()


@needs_bwrap
async def test_a_worker_without_a_sandbox_refuses_runs_with_the_reason_and_one_alert(
        settings: KodaSettings, bus: Bus, api: FakeAnthropic, events_seen: Events, tmp_path: Path) -> None:
    s = settings.model_copy(update={"anthropic_base_url": api.url})
    init_home(s)
    write_tasks(s, {"id": "job", "prompt": "Do the job."})
    worker = MaskedWorker(s, tmp_path)
    try:
        requests = [run_request("job", n) for n in range(2)]
        for request in requests:
            await publish_run(bus, request)
        await events_seen.wait(lambda: len(events_seen.finished()) == 2, timeout=90)
    finally:
        worker.stop()
    for event in events_seen.finished():
        assert event.event == "run.failed", event
        assert "agent runs are refused: bubblewrap cannot create the sandbox's namespaces" in str(event.data)
    alerts = [e for e in events_seen.items if e.event == "alert"]
    assert len(alerts) == 1 and "KODA_CLAUDE_SANDBOX=false" in alerts[0].summary, alerts
    assert api.main_calls() == []  # no model call: the agent never ran unsandboxed


@needs_bwrap
async def test_the_operator_may_opt_out_explicitly(
        settings: KodaSettings, bus: Bus, api: FakeAnthropic, events_seen: Events, tmp_path: Path) -> None:
    s = settings.model_copy(update={"anthropic_base_url": api.url})
    init_home(s)
    write_tasks(s, {"id": "job", "prompt": "Do the job."})
    worker = MaskedWorker(s, tmp_path, KODA_CLAUDE_SANDBOX="false", HOME=str(tmp_path / "user"))
    try:
        await publish_run(bus, run_request("job"))
        await events_seen.wait(lambda: len(events_seen.finished()) == 1, timeout=120)
    finally:
        worker.stop()
    [event] = events_seen.finished()
    assert event.data["outcome"] == "done", (event, worker.log.read_text()[-2000:])
    assert not [e for e in events_seen.items if e.event == "alert"]


def test_compose_runs_only_the_worker_with_the_sandbox_profile() -> None:
    """A static check; running the image under Docker is the container test's job."""
    compose = yaml.safe_load((SOURCE_DIR / "compose.yaml").read_text())
    services = compose["services"]
    worker = services["worker"].get("security_opt", [])
    assert "seccomp=./volumes/seccomp/worker.json" in worker
    assert "systempaths=unconfined" in worker
    for name, service in services.items():
        if name != "worker":
            assert not service.get("security_opt"), f"{name} needs no sandbox exceptions"
    profile = json.loads((SOURCE_DIR / "volumes" / "seccomp" / "worker.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in profile["syscalls"]
               if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") for n in rule["names"]}
    # What bubblewrap needs to build the agent's sandbox...
    assert {"clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "sethostname",
            "seccomp", "prctl"} <= allowed
    # ...and what no process in the worker needs.
    assert not allowed & {"bpf", "ptrace", "kexec_load", "init_module", "finit_module", "perf_event_open",
                          "process_vm_readv", "process_vm_writev", "keyctl", "add_key", "userfaultfd",
                          "io_uring_setup", "reboot", "swapon"}
