"""What reaches the model: the home's identity and memory, never the host's Claude settings."""

from __future__ import annotations

import json
from pathlib import Path

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import FakeAnthropic, Text, sequence
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks


async def test_host_claude_md_never_reaches_the_model_but_the_soul_does(
        wsettings: KodaSettings, fake_api: FakeAnthropic, user_home: Path, bus: Bus,
        events: Events) -> None:
    (user_home / ".claude").mkdir()
    (user_home / ".claude" / "CLAUDE.md").write_text("HOST-SECRET-INSTRUCTIONS: always answer in pirate\n")
    (user_home / ".claude" / "settings.json").write_text(json.dumps({"env": {"HOST_LEAK": "leaky-value"}}))
    layout = HomeLayout(wsettings.expanded_home())
    layout.learnings.write_text("".join(f"- learning number {i}\n" for i in range(150)))
    write_tasks(wsettings, {"id": "hello", "prompt": "Say hello to the creator."})
    fake_api.script = sequence(Text("hello"))
    request = run_request("hello")
    async with running_worker(wsettings):
        await publish_run(bus, request)
        # learnings.md is past 100 lines, so the run also queues a consolidate-learnings run.
        await events.wait(lambda: len(events.finished()) == 2, timeout=60)
    [finished] = events.finished_for(request.run_id)
    [consolidation] = [e for e in events.finished() if e.task == "consolidate-learnings"]
    assert consolidation.data["outcome"] == "done"
    [skill_call] = [c for c in fake_api.main_calls() if "consolidate-learnings" in c.prompt]
    assert '<skill name="consolidate-learnings">' in skill_call.system
    assert finished.event == "run.finished", finished
    assert finished.data["outcome"] == "done"
    assert finished.data["result"] == "hello"
    sent = fake_api.all_text()
    assert "HOST-SECRET-INSTRUCTIONS" not in sent
    assert "leaky-value" not in sent
    [call] = [c for c in fake_api.main_calls() if "Say hello" in c.prompt]
    assert "You are **Koda**" in call.system  # soul.md
    assert "Say hello to the creator." in call.prompt
    # learnings.md holds 150 lines; only the newest 100 go into the prompt. They grow run by
    # run, so they are in the user message, before the task, and never in the system prompt
    # (which the prompt cache keeps from one run to the next).
    assert "learning number 149" in call.prompt and "learning number 50\n" in call.prompt
    assert "learning number 49\n" not in call.prompt
    assert "learning number" not in call.system
    assert call.prompt.index("learning number 149") < call.prompt.index("Say hello to the creator.")
    record = json.loads((layout.runs / f"{request.run_id}.json").read_text())
    assert record["outcome"] == "done" and record["turns"] == 1
    daily = list(layout.daily_logs.glob("*.md"))
    assert len(daily) == 1 and request.run_id in daily[0].read_text()
