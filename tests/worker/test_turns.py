"""Turn caps: a long task finishes under the default cap; a longer one ends `turn_cap`, or goes
on in the same session when its task says `continue`."""

from __future__ import annotations

import json

from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import FakeAnthropic, tool_loop
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks

#: Each turn calls Glob: a real tool whose call starts no sandboxed process, so these tests
#: spend their time counting turns, not starting bubblewrap forty times.
CHEAP = {"tool": "Glob", "tool_input": {"pattern": "*.md"}}


async def test_twenty_tool_turns_finish_under_the_default_cap(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings, {"id": "long", "prompt": "Do twenty things."})  # max_turns: default 25
    fake_api.script = tool_loop(20, final="twenty done", **CHEAP)
    request = run_request("long")
    async with running_worker(wsettings):
        await publish_run(bus, request)
        await events.wait(lambda: events.finished(), timeout=90)
    [event] = events.finished()
    assert event.data["outcome"] == "done", event
    assert event.data["turns"] == 21 and event.data["result"] == "twenty done"


async def test_forty_turns_end_turn_cap_or_continue_when_the_task_says_so(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings,
                {"id": "capped", "prompt": "Do forty things (capped)."},
                {"id": "goes-on", "prompt": "Do forty things.", "on_turn_cap": "continue",
                 "max_continuations": 2})
    fake_api.script = tool_loop(40, final="forty done", **CHEAP)
    capped, goes_on = run_request("capped"), run_request("goes-on", 1)
    async with running_worker(wsettings):
        await publish_run(bus, capped)
        await publish_run(bus, goes_on)
        await events.wait(lambda: len(events.finished()) == 2, timeout=110)
    [cap_event] = events.finished_for(capped.run_id)
    assert cap_event.data["outcome"] == "turn_cap"
    # The cap held: 25 model requests, not one more (the CLI counts the final refusal as a turn).
    assert len([c for c in fake_api.main_calls() if "(capped)" in c.prompt]) == 25
    assert cap_event.data["turns"] in (25, 26)
    [go_event] = events.finished_for(goes_on.run_id)
    assert go_event.data["outcome"] == "done", go_event
    assert go_event.data["result"] == "forty done"
    layout = HomeLayout(wsettings.expanded_home())
    record = json.loads((layout.runs / f"{goes_on.run_id}.json").read_text())
    assert record["steps"][0]["continuations"] == 1
    # The continuation resumed the same conversation: its last request held all 40 tool turns.
    assert max(c.turn for c in fake_api.main_calls() if "(capped)" not in c.prompt) >= 40
