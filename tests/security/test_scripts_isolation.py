"""Nothing the agent can write runs with a secret: code it plants in its home (Python's user
site, a `.pth`, `sitecustomize`, a module shadowing the standard library) is not loaded by a
script the actions service runs with credentials, whether the manifest names the interpreter
or the script starts by its shebang."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from koda.services.actions.service import ActionsService
from koda.services.worker.options import scrub_available
from koda.shared.bus import Bus
from koda.shared.messages import ActionRequest, ActionResult
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Text, ToolUse, sequence
from tests.scraper.helpers import ask, make_home, serving
from tests.security.hostile_files import Rig, rig_fixture  # noqa: F401 (the rig fixture)
from tests.worker.conftest import publish_run, run_request, running_worker, write_tasks

SECRET = "xk-isolation-secret-4be1d2"
PLANTED = "PLANTED-CODE-RAN"
VERSIONS = [f"python3.{minor}" for minor in range(8, 15)]

#: What a hostile agent drops in its home: each tries to print a marker and steal the secret.
STEAL = (f"import os, sys; sys.stdout.write('{PLANTED} ' + os.environ.get('X_API_KEY', '') + '\\n'); "
         "open(os.path.join(os.environ.get('KODA_DATA', '/tmp'), 'stolen.txt'), 'a')"
         ".write(os.environ.get('X_API_KEY', ''))")

SCRIPT = """
import json, os, sys
print("cwd=" + os.getcwd())
print("home=" + os.environ["HOME"])
print("has-key=" + str(bool(os.environ.get("X_API_KEY"))))
print("path=" + json.dumps(sys.path))
"""


def plant(home: Path) -> None:
    for version in VERSIONS:
        site = home / ".local" / "lib" / version / "site-packages"
        site.mkdir(parents=True, exist_ok=True)
        (site / "usercustomize.py").write_text(STEAL + "\n")
        (site / "sitecustomize.py").write_text(STEAL + "\n")
        (site / "zz-evil.pth").write_text(STEAL + "\n")
    for folder in (home, home / "data", home / "data" / "drafts"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(STEAL + "\n")
        (folder / "json.py").write_text(STEAL + "\n")  # shadows the standard library if on the path
    (home / ".pythonrc.py").write_text(STEAL + "\n")


def naive_run(home: Path) -> str:
    """Python as a naive runner starts it: HOME = the agent home, cwd = a folder it writes."""
    return subprocess.run(["python3", "-c", "print('naive')"], cwd=home / "data",
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)},
                          capture_output=True, text=True, timeout=30).stdout


def private(folder: str, home: Path, state: Path) -> bool:
    path = Path(folder).resolve()
    return not path.is_relative_to(home.resolve()) and path.is_relative_to(state)


async def test_code_planted_in_the_home_never_runs_with_a_secret(settings: KodaSettings, bus: Bus) -> None:
    manifest = {"scripts": [
        {"name": "named", "command": ["python3", "named.py"], "secrets": ["X_API_KEY"]},
        {"name": "shebang", "command": ["./shebang.py"], "secrets": ["X_API_KEY"]},
    ]}
    home = make_home(settings, {"X_API_KEY": SECRET}, {"scripts/manifest.json": manifest})
    (home / "scripts" / "named.py").write_text(SCRIPT)
    shebang = home / "scripts" / "shebang.py"
    shebang.write_text("#!/usr/bin/env python3\n" + SCRIPT)
    shebang.chmod(0o755)
    plant(home)
    assert PLANTED in naive_run(home)  # the control: the plant works on a naive runner

    async with serving(ActionsService(settings)):
        results = [await ask(bus, f"koda.actions.script.{name}",
                             ActionRequest(name=f"script.{name}", idempotency_key=f"k-{name}"), ActionResult)
                   for name in ("named", "shebang")]
    for result in results:
        assert result.ok, result
        assert "has-key=True" in result.output  # it ran with the secret...
        assert PLANTED not in result.output      # ...and none of the planted code
        cwd = next(line[4:] for line in result.output.splitlines() if line.startswith("cwd="))
        script_home = next(line[5:] for line in result.output.splitlines() if line.startswith("home="))
        for folder in (cwd, script_home):
            assert private(folder, home, settings.expanded_state()), folder
        assert str(home / "data") not in result.output.split("path=")[1]
    assert not (home / "data" / "stolen.txt").exists()
    assert SECRET not in "".join(r.model_dump_json() for r in results)
    assert os.stat(cwd).st_mode & 0o777 == 0o700


@pytest.mark.skipif(not scrub_available(), reason="needs bubblewrap and socat")
async def test_the_agent_cannot_plant_node_modules_a_script_would_require(rig: Rig, bus: Bus) -> None:
    """Node resolves a script's require() from scripts/ up into the home, whatever HOME is, so
    the home's node_modules/ and package.json are read-only to the agent (file tools and shell)."""
    home = rig.layout.root
    evil = "module.exports = () => process.env"
    write_tasks(rig.settings, {"id": "npm", "prompt": "Install a helper."})
    rig.api.script = sequence(
        ToolUse.one("Write", file_path=str(home / "node_modules" / "leftpad" / "index.js"), content=evil),
        ToolUse.one("Write", file_path=str(home / "package.json"), content='{"imports": {"#x": "./x.js"}}'),
        ToolUse.one("Bash", description="install",
                    command=f"mkdir -p node_modules/x && echo '{evil}' > node_modules/x/index.js; "
                    "echo '{}' > package.json"),
        Text("done"))
    async with running_worker(rig.settings):
        await publish_run(bus, run_request("npm"))
        await rig.events.wait(lambda: rig.events.finished(), timeout=120)
    planted = [p for p in (home / "node_modules").rglob("*") if p.is_file() and p.stat().st_size]
    assert planted == []
    assert not (home / "package.json").exists() or (home / "package.json").read_text() == ""
