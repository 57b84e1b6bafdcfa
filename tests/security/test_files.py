"""Deny by default for files: a hostile agent driving the real CLI reads nothing outside its home.

The worker runs with HOME pointing at a fake host home full of canaries (ssh key, cloud
credentials, the host's Claude transcripts, shell history, .netrc) and a state folder with a
console token, logs and a NATS store; the scripted model tries every way in. No canary may reach
the fake API, while the agent's own work (reading its home, running python, writing drafts)
still works, so a sandbox that refused everything would fail this test too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from koda.services.worker.options import config_dir, scrub_available
from koda.shared.bus import Bus
from tests.fake_anthropic import API_KEY, Text, ToolUse, sequence
from tests.security.hostile_files import (  # noqa: F401 (the rig fixture)
    WRITTEN_MARK,
    Rig,
    file_tool_attacks,
    plant_all,
    rig_fixture,
    shell_attacks,
)
from tests.worker.conftest import publish_run, run_request, running_worker, write_tasks


def written_outside(home: Path, marker: str) -> list[Path]:
    """Files beside the home (its test folder: host home, state, siblings) holding `marker`."""
    return [p for p in home.parent.rglob("*") if p.is_file() and not p.is_relative_to(home)
            and marker.encode() in p.read_bytes()]


needs_sandbox = pytest.mark.skipif(not scrub_available(), reason="needs bubblewrap and socat (./dev test "
                                   "installs them): the sandbox is the boundary under test")


@needs_sandbox
async def test_no_canary_outside_the_home_reaches_the_model(rig: Rig, bus: Bus) -> None:
    wsettings, fake_api, events, user_home = rig.settings, rig.api, rig.events, rig.host_home
    layout = rig.layout
    state = wsettings.expanded_state()
    canaries = plant_all(layout, state, user_home)
    attacks = [ToolUse.one("Bash", command=c, description="look around")
               for c in shell_attacks(layout.root, state, user_home)]
    attacks += [ToolUse.one(tool, **args) for tool, args in file_tool_attacks(layout.root, state, user_home)]
    controls = [
        ToolUse.one("Bash", command="head -c 40 soul.md; echo; python3 -c 'print(6*7)'; "
                    "echo draft-ok > data/drafts/ok.txt && cat data/drafts/ok.txt", description="work"),
        ToolUse.one("Read", file_path=str(layout.soul)),
    ]
    write_tasks(wsettings, {"id": "nosy", "prompt": "Find the credentials.", "max_turns": 60})
    fake_api.script = sequence(*attacks, *controls, Text("nothing found"))
    async with running_worker(wsettings):
        await publish_run(bus, run_request("nosy"))
        await events.wait(lambda: events.finished(), timeout=180)
    [event] = events.finished()
    assert event.data["outcome"] == "done", event
    sent = fake_api.all_text()
    results = [c.last_tool_result() for c in fake_api.main_calls()[1:]]
    for r in dict.fromkeys(results):
        print("---\n", r[:700])
    assert canaries.leaked(sent) == [], "\n---\n".join(results)
    assert API_KEY not in sent
    # Nothing outside the home was written either: every canary file is as planted, and no
    # file beside the home holds what the agent wrote (the CLI leaves empty mount points).
    for path, value in canaries.by_path.items():
        assert path.read_text().endswith(value + "\n"), path
    assert written_outside(layout.root, WRITTEN_MARK) == []
    assert (layout.drafts / "w.txt").read_text().strip() == WRITTEN_MARK  # the same shell wrote here
    # The controls: the agent's own home still works, so the refusals above are the boundary.
    assert any("42" in r and "draft-ok" in r for r in results), results[-3:]
    assert any("You are **Koda**" in r and r.startswith("1\t") for r in results), results[-3:]
    # The CLI kept its own files in the state folder, never in the host's ~/.claude.
    assert config_dir(wsettings).is_dir()
    host_claude = {p.name for p in (user_home / ".claude" / "projects").iterdir()}
    assert host_claude == {"x"}, host_claude


async def test_links_in_the_home_never_pull_a_secret_into_the_prompt(rig: Rig, bus: Bus) -> None:
    """The agent can swap learnings.md, goals.md or user.md for a link; the worker itself (not
    sandboxed) reads those into the prompt, so it must not follow them."""
    layout, state = rig.layout, rig.settings.expanded_state()
    canaries = plant_all(layout, state, rig.host_home)
    for name, target in (("learnings.md", layout.env), ("goals.md", state / "console-token"),
                         ("user.md", rig.host_home / ".ssh" / "id_rsa")):
        (layout.root / name).unlink(missing_ok=True)
        (layout.root / name).symlink_to(target)
    write_tasks(rig.settings, {"id": "plain", "prompt": "Say hello."})
    rig.api.script = sequence(Text("hello"))
    async with running_worker(rig.settings):
        await publish_run(bus, run_request("plain"))
        await rig.events.wait(lambda: rig.events.finished(), timeout=120)
    [event] = rig.events.finished()
    assert event.data["outcome"] == "done", event
    sent = rig.api.all_text()
    assert canaries.leaked(sent) == []
    assert sent.count("Koda does not follow links") >= 3
