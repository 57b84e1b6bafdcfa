"""The run transcript: every turn, tool call and result, tokens, steps, approvals and artifacts
written under the state folder as the run goes, redacted; and cancelling a run in hand."""

from __future__ import annotations

import asyncio
import time

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import RunLedgerEntry
from koda.shared.settings import KodaSettings
from koda.shared.transcript import prune, read_entries, transcript_path
from tests.fake_anthropic import FakeAnthropic, Text, ToolUse, sequence, tool_loop
from tests.worker.conftest import Events, publish_run, run_request, running_worker, write_tasks

SECRET = "tl-home-secret-8c1f2e"


async def test_a_run_leaves_a_redacted_transcript_of_turns_tools_tokens_and_approvals(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    # Redelivery after a missed progress ack is another test's subject: not under this one's load.
    wsettings = wsettings.model_copy(update={"worker_ack_wait": 30.0})
    layout = HomeLayout(wsettings.expanded_home())
    layout.env.write_text(f"SOCIAL_TOKEN={SECRET}\n")
    write_tasks(wsettings, {"id": "post", "steps": [
        {"id": "draft", "prompt": "Write the post."},
        {"id": "publish", "prompt": "Propose it.", "max_turns": 5}], "gated": ["social.post"]})
    long_text = "word " * 2000
    draft_step = sequence(
        ToolUse.one("Bash", command="echo hello-from-bash", description="greet"),
        ToolUse.one("mcp__koda__save_draft", name="post.md", content=f"The post. {long_text}"),
        Text(f"Drafted; the key was {SECRET}"))
    publish_step = sequence(
        ToolUse.one("mcp__koda__propose_action", action="social.post", args={"text": "hi"},
                    reason="post it", artifact="data/drafts/x/post.md"),
        Text("Proposed."))
    fake_api.script = lambda call: (draft_step if "Write the post" in call.prompt
                                    else publish_step)(call)
    request = run_request("post")
    async with running_worker(wsettings):
        await publish_run(bus, request)
        # propose_action pauses the run; a rejection resumes it and the agent ends its step.
        await events.wait(lambda: events.of("run.awaiting_approval", request.run_id), timeout=90)
        [paused] = events.of("run.awaiting_approval", request.run_id)
        await ApprovalStore(bus).decide(paused.data["approval_id"], False, "4242")
        await events.wait(lambda: events.finished_for(request.run_id), timeout=90)
    [end] = events.finished_for(request.run_id)
    assert end.data["outcome"] == "done", end
    path = transcript_path(wsettings.expanded_state(), request.run_id)
    assert path is not None and path.stat().st_mode & 0o077 == 0
    assert SECRET not in path.read_text()
    entries = read_entries(wsettings.expanded_state(), request.run_id)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "start" and kinds[-1] == "end" and entries[-1]["outcome"] == "done"
    # The resumed delivery enters the publish step again (it resumes its paused session).
    assert [e["step"] for e in entries if e["kind"] == "step"] == ["draft", "publish", "publish"]
    [bash] = [e for e in entries if e["kind"] == "tool" and e["name"] == "Bash"]
    assert "echo hello-from-bash" in bash["input"]["text"]
    [result] = [e for e in entries if e["kind"] == "tool_result" and e["id"] == bash["id"]]
    assert "hello-from-bash" in result["output"]["text"] and result["name"] == "Bash"
    [draft] = [e for e in entries if e["kind"] == "tool" and e["name"].endswith("save_draft")]
    assert draft["input"]["folded"] > len(draft["input"]["text"])  # a long input is folded
    assert any(e["kind"] == "text" and "[redacted]" in e["text"] for e in entries)
    turns = [e for e in entries if e["kind"] == "turn"]
    assert len(turns) == 5 and all(t["output_tokens"] > 0 for t in turns)
    sessions = [e for e in entries if e["kind"] == "session"]
    assert [s["outcome"] for s in sessions] == ["done", "awaiting_approval", "done"]
    [artifact] = [e for e in entries if e["kind"] == "artifact"]
    assert artifact["path"] == f"data/drafts/{request.run_id}/post.md"
    [approval] = [e for e in entries if e["kind"] == "approval"]
    assert approval["action"] == "social.post" and approval["step"] == "publish"
    assert approval["id"].startswith(request.run_id)


async def test_cancel_stops_a_running_run_and_records_it_cancelled(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings, {"id": "long", "prompt": "Do many things.", "max_turns": 200})
    fake_api.script = tool_loop(190, final="never")
    request = run_request("long")
    state = wsettings.expanded_state()
    async with running_worker(wsettings):
        await publish_run(bus, request)
        deadline = time.monotonic() + 60
        while not any(e["kind"] == "tool_result" for e in read_entries(state, request.run_id)):
            assert time.monotonic() < deadline, "the run never got going"
            await asyncio.sleep(0.1)
        await bus.emit(bus.event("run.cancel_requested", "cancel", task="long",
                                 run_id=request.run_id, data={"requested_by": "tester"}))
        await events.wait(lambda: events.finished_for(request.run_id), timeout=30)
    [end] = events.finished_for(request.run_id)
    assert end.event == "run.failed" and end.data["outcome"] == "cancelled"
    assert "tester" in end.data["error"]
    entry = RunLedgerEntry.from_bytes((await bus.kv["runs"].get(request.run_id)).value)
    assert entry.status == "cancelled"
    assert len(fake_api.main_calls()) < 190
    entries = read_entries(state, request.run_id)
    assert {"kind": "cancel", "by": "tester"}.items() <= next(
        e for e in entries if e["kind"] == "cancel").items()
    assert entries[-1]["kind"] == "end" and entries[-1]["outcome"] == "cancelled"


async def test_a_queued_run_cancelled_before_it_starts_never_runs(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events) -> None:
    write_tasks(wsettings, {"id": "quick", "prompt": "Say hi."})
    request = run_request("quick")
    async with running_worker(wsettings):
        await bus.emit(bus.event("run.cancel_requested", "cancel", task="quick",
                                 run_id=request.run_id, data={"requested_by": "tester"}))
        await events.wait(lambda: events.finished_for(request.run_id), timeout=30)
        await publish_run(bus, request)
        other = run_request("quick", 1)
        await publish_run(bus, other)  # a later run goes through: the queue moved past ours
        await events.wait(lambda: events.finished_for(other.run_id), timeout=60)
    assert [e.data["outcome"] for e in events.finished_for(request.run_id)] == ["cancelled"]
    kinds = [e["kind"] for e in read_entries(wsettings.expanded_state(), request.run_id)]
    assert kinds == ["cancel"]  # no session ever started for it


def test_transcripts_older_than_the_limit_are_pruned(wsettings: KodaSettings) -> None:
    state = wsettings.expanded_state()
    old, new = transcript_path(state, "a.1"), transcript_path(state, "b.2")
    assert old is not None and new is not None
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text("{}\n")
    new.write_text("{}\n")
    week_ago = time.time() - 7 * 86400
    import os
    os.utime(old, (week_ago, week_ago))
    assert prune(state, 3) == 1 and not old.exists() and new.exists()
