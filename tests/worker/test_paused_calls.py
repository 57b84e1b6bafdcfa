"""A gated MCP tool call pauses the run; a decision resumes the session in any worker.

Real parts: the bundled CLI against the fake Messages API, a real stdio MCP server standing in
for YouTube (it appends each call it really runs to a file), the worker as a real process that
is killed with SIGKILL while the run waits, and a second worker process with its own state
folder (no local transcript) that resumes the session from NATS. In the first test an approver
clicks Approve in the fake Discord through the real gateway; the others decide through the
gateway's `ApprovalStore` (what a click or the console calls), signed with its key.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from koda.services.gateway.service import GatewayService
from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout
from koda.shared.messages import ApprovalRecord, RunLedgerEntry
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import Call, FakeAnthropic, Reply, Text, ToolUse
from tests.fake_discord import FakeDiscord
from tests.inprocess import serving
from tests.natsserver import NatsServer, free_port_block
from tests.worker.conftest import Events, WorkerProcess, publish_run, run_request, running_worker, write_tasks

SERVER = Path(__file__).with_name("youtube_mcp.py")
APPROVER = 424242424242424242


async def click_approve(discord: FakeDiscord, approval_id: str) -> None:
    """The approver clicks Approve on the gateway's post of this approval."""
    custom_id = f"koda:approve:{approval_id}"

    async def posted() -> str:
        while True:
            for message in discord.posted("approvals"):
                for row in message.get("components") or []:
                    if any(c.get("custom_id") == custom_id for c in row.get("components") or []):
                        return str(message["id"])
            await asyncio.sleep(0.1)
    message_id = await asyncio.wait_for(posted(), 30)
    interaction = await discord.click(message_id, custom_id, APPROVER)
    await discord.response(interaction, timeout=30)


def with_discord(settings: KodaSettings, discord: FakeDiscord) -> KodaSettings:
    channels = discord.channels
    return settings.model_copy(update={
        "discord_token": SecretStr("fake-bot-token-paused"), "discord_guild": int(discord.guild_id),
        "discord_approvals_channel": int(channels["approvals"]),
        "discord_reports_channel": int(channels["reports"]),
        "discord_alerts_channel": int(channels["alerts"]), "discord_approvers": str(APPROVER),
        "discord_api_base": discord.api_base, "discord_gateway_url": discord.gateway_url,
        "console_port": free_port_block(1)})


def setup_home(settings: KodaSettings, tmp_path: Path, **task: Any) -> Path:
    """A `publish` task gating the YouTube MCP server's tools; returns the calls file."""
    calls = tmp_path / "youtube-calls.jsonl"
    layout = HomeLayout(settings.expanded_home())
    layout.mcp_servers.write_text(json.dumps({"mcpServers": {"youtube": {
        "command": sys.executable, "args": [str(SERVER), str(calls)]}}}))
    write_tasks(settings, {"id": "publish", "prompt": "Publish the video.",
                           "gated": ["mcp__youtube__*"], **task})
    return calls


def script(call: Call) -> Reply:
    if call.turn == 0:
        return ToolUse.one("mcp__youtube__upload", title="hello")
    return Text("NEXT: " + call.last_tool_result())


def holding(first_resumed: threading.Event, release: threading.Event) -> Any:
    """`script`, but the first request after the tool ran waits until `release` (the worker
    resuming the session is killed meanwhile)."""
    def reply(call: Call) -> Reply:
        if call.turn > 0 and not first_resumed.is_set():
            first_resumed.set()
            release.wait(60)
        return script(call)
    return reply


def ran(calls: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


async def paused(bus: Bus, events: Events, run_id: str) -> ApprovalRecord:
    await events.wait(lambda: events.of("run.awaiting_approval", run_id), timeout=90)
    [event] = events.of("run.awaiting_approval", run_id)
    got = await ApprovalStore(bus).get(event.data["approval_id"])
    assert got is not None
    return got[0]


async def ledger(bus: Bus, run_id: str) -> RunLedgerEntry:
    entry = await bus.kv["runs"].get(run_id)
    assert entry.value
    return RunLedgerEntry.from_bytes(entry.value)  # type: ignore[no-any-return]


async def test_approved_mcp_call_resumes_in_another_worker_after_kill_9_and_runs_once(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path) -> None:
    """kill -9 while the run waits, and again while the resumed session goes on."""
    # One slot, so a redelivery after the second kill cannot race a live attempt on a loaded host.
    wsettings = wsettings.model_copy(update={"worker_concurrency": 1, "worker_ack_wait": 5.0})
    calls = setup_home(wsettings, tmp_path)
    resumed, release = threading.Event(), threading.Event()
    fake_api.script = holding(resumed, release)
    request = run_request("publish")
    first = WorkerProcess(wsettings, tmp_path / "worker-a.log")
    # The second worker shares nothing local with the first: its own state folder, so its CLI
    # has no copy of the transcript and must take it from NATS.
    second = WorkerProcess(wsettings.model_copy(update={"state_dir": tmp_path / "state-b"}),
                           tmp_path / "worker-b.log")
    first.start()
    try:
        await publish_run(bus, request)
        record = await paused(bus, events, request.run_id)
        # The exact call is in the record; the run waits holding nothing.
        assert record.tool == "mcp__youtube__upload" and record.tool_input == {"title": "hello"}
        assert record.session_id and record.tool_use_id and record.status == "pending"
        entry = await ledger(bus, request.run_id)
        assert entry.status == "awaiting_approval" and entry.approval_id == record.id
        assert ran(calls) == [] and len(fake_api.main_calls()) == 1
        first.kill()  # kill -9 while it waits: nothing is lost
        second.start()
        discord = FakeDiscord()
        await discord.start()
        try:
            async with serving(GatewayService(with_discord(wsettings, discord)), timeout=30):
                await click_approve(discord, record.id)
        finally:
            await discord.stop()
        got = await ApprovalStore(bus).get(record.id)
        assert got is not None and (got[0].status, got[0].decided_by) == ("approved", str(APPROVER))
        # The approved call ran; the agent's next request is on its way: kill -9 again.
        assert await asyncio.to_thread(resumed.wait, 90), "the session never resumed"
        assert ran(calls) == [{"title": "hello"}]
        second.kill()
        release.set()
        second.start()
        await events.wait(lambda: events.finished_for(request.run_id), timeout=90)
    finally:
        first.stop()
        second.stop()
    [end] = events.finished_for(request.run_id)
    assert end.data["outcome"] == "done", end.data.get("error")
    assert ran(calls) == [{"title": "hello"}]  # ran once, as approved
    # The agent's next request has the result: from the transcript in NATS, or, when the kill
    # came before the result reached it, from the record (the call is never run again).
    last = fake_api.main_calls()[-1]
    assert "https://videos.test/v/1" in last.last_tool_result()
    assert "NEXT: " in end.data["result"] and "videos.test/v/1" in end.data["result"]
    assert not (tmp_path / "state-b" / "claude" / "projects").exists() or any(
        (tmp_path / "state-b" / "claude" / "projects").rglob(f"{record.session_id}.jsonl"))
    resumed_by = (await ledger(bus, request.run_id)).worker
    assert resumed_by is not None and resumed_by != entry.worker


async def decide_when_back(store: ApprovalStore, approval_id: str, **how: Any) -> None:
    """Decide as soon as the bus is reachable again (NATS was just restarted)."""
    async def attempt() -> None:
        while True:
            try:
                await store.decide(approval_id, **how)
                return
            except Exception:  # reconnecting
                await asyncio.sleep(0.2)
    await asyncio.wait_for(attempt(), 30)


async def test_edited_rejected_and_expired_calls(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path, nats_server: NatsServer) -> None:
    calls = setup_home(wsettings, tmp_path)
    fake_api.script = script
    store = ApprovalStore(bus)
    async with running_worker(wsettings):
        # Edited: the approver's args run, and the audit event says what changed. NATS is
        # restarted while the run waits: the record, the ledger and the transcript are on disk.
        edited = run_request("publish", 1)
        await publish_run(bus, edited)
        record = await paused(bus, events, edited.run_id)
        nats_server.restart()
        await decide_when_back(store, record.id, approve=True, who="4242",
                               args={"title": "better title"})
        await events.wait(lambda: events.finished_for(edited.run_id), timeout=60)
        assert ran(calls) == [{"title": "better title"}]
        [audit] = [e for e in events.of("approval.decided") if e.data["approval_id"] == record.id]
        assert audit.data["edited"] and audit.data["original_args"] == {"title": "hello"}
        assert "better title" in fake_api.main_calls()[-1].last_tool_result()

        # Rejected (on_rejection continue, the default): the agent is told who and why.
        rejected = run_request("publish", 2)
        await publish_run(bus, rejected)
        record = await paused(bus, events, rejected.run_id)
        await store.decide(record.id, False, "4242", note="wrong thumbnail")
        await events.wait(lambda: events.finished_for(rejected.run_id), timeout=60)
        told = fake_api.main_calls()[-1].last_tool_result()
        assert "rejected by 4242: wrong thumbnail" in told
        assert len(ran(calls)) == 1

        # Expired: the sweep expires it, the run resumes and the agent is told.
        expired = run_request("publish", 3)
        await publish_run(bus, expired)
        record = await paused(bus, events, expired.run_id)
        await store.sweep(now=datetime.now(UTC) + timedelta(days=2))
        await events.wait(lambda: events.finished_for(expired.run_id), timeout=60)
        assert "expired" in fake_api.main_calls()[-1].last_tool_result()
        assert len(ran(calls)) == 1
    [end] = events.finished_for(expired.run_id)
    assert end.data["outcome"] == "done"


async def test_on_rejection_end_finishes_the_run_without_the_model(
        wsettings: KodaSettings, fake_api: FakeAnthropic, bus: Bus, events: Events,
        tmp_path: Path) -> None:
    calls = setup_home(wsettings, tmp_path, on_rejection="end")
    fake_api.script = script
    async with running_worker(wsettings):
        request = run_request("publish")
        await publish_run(bus, request)
        record = await paused(bus, events, request.run_id)
        await ApprovalStore(bus).decide(record.id, False, "4242", note="not today")
        await events.wait(lambda: events.finished_for(request.run_id), timeout=60)
    [end] = events.finished_for(request.run_id)
    assert end.data["outcome"] == "cancelled" and end.data["cause"] == "rejected"
    assert "not today" in end.data["error"]
    assert ran(calls) == [] and len(fake_api.main_calls()) == 1
    assert (await ledger(bus, request.run_id)).status == "cancelled"
