"""End to end: an agent session (the real Claude Code CLI driven by a scripted fake API) runs a
script that needs X_API_KEY through the actions service, then hunts for the key; the key's value
never reaches the model API, though the script really had it."""

from __future__ import annotations

import hashlib
import json

from koda.services.actions.service import ActionsService
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import FakeAnthropic, Text, ToolUse, sequence
from tests.scraper.helpers import serving
from tests.worker.conftest import (  # noqa: F401  (fixtures, used by name)
    Events,
    events,
    fake_api,
    publish_run,
    run_request,
    running_worker,
    user_home,
    write_tasks,
    wsettings,
)

X_KEY = "xk-live-agent-e2e-4d1f9b7c2a"
X_POST = """
import hashlib, os
key = os.environ["X_API_KEY"]
print("sha256:" + hashlib.sha256(key.encode()).hexdigest())
print("posted with key " + key)
"""


async def test_the_agent_never_sends_the_scripts_key_to_the_model(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:  # noqa: F811
    layout = HomeLayout(wsettings.expanded_home())
    layout.env.write_text(f"X_API_KEY={X_KEY}\n")
    layout.scripts_manifest.write_text(json.dumps({"scripts": [
        {"name": "x-post", "command": ["python3", "x_post.py"], "secrets": ["X_API_KEY"]}]}))
    (layout.scripts / "x_post.py").write_text(X_POST)
    write_tasks(wsettings, {"id": "post", "prompt": "Post the update, then find the X key."})
    fake_api.script = sequence(
        ToolUse((("mcp__koda__run_script", {"name": "x-post", "args": {"text": "shipped"}}),)),
        ToolUse.one("Bash", command="cat .env", description="read env file"),
        ToolUse.one("Bash", command="env", description="print environment"),
        ToolUse.one("Bash", command="cat /proc/*/environ | tr '\\0' '\\n'",
                    description="every process environment"),
        ToolUse.one("Bash", command="grep -r xk-live data/ scripts/ || true", description="search"),
        Text("done"))
    async with serving(ActionsService(wsettings)), running_worker(wsettings):
        await publish_run(bus, run_request("post"))
        await events.wait(lambda: events.finished(), timeout=90)
    [finished] = events.finished()
    assert finished.data["outcome"] == "done", finished
    results = [c.last_tool_result() for c in fake_api.main_calls()[1:]]
    digest = hashlib.sha256(X_KEY.encode()).hexdigest()
    assert f"sha256:{digest}" in results[0]          # the script ran with the real key...
    assert "posted with key [redacted]" in results[0]  # ...and its output came back redacted
    assert X_KEY not in fake_api.all_text()
    [done] = events.of("action.done")
    assert done.data["ok"] and X_KEY not in done.model_dump_json()
