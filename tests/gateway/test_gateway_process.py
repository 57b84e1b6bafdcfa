"""The gateway as the real process supervisord runs (`python -m koda.services.gateway`), configured
only through `KODA_*` variables, restarted between an approval's post and its click."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from koda.shared.approvals import ApprovalStore
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord

from .conftest import APPROVER, CONSOLE_TOKEN, Propose
from .helpers import actions_published, buttons


def gateway_env(settings: KodaSettings, fake: FakeDiscord) -> dict[str, str]:
    ch = fake.channels
    env = {k: v for k, v in os.environ.items() if not k.startswith("KODA_")}
    env.update({
        "KODA_HOME": str(settings.home), "KODA_STATE_DIR": str(settings.state_dir),
        "KODA_NATS_URL": settings.nats_url, "KODA_PORT_BASE": str(settings.port_base),
        "KODA_HEARTBEAT_INTERVAL": "0.5", "KODA_DRAIN_TIMEOUT": "5",
        "KODA_DISCORD_TOKEN": "fake-bot-token-abcdef", "KODA_DISCORD_GUILD": fake.guild_id,
        "KODA_DISCORD_APPROVALS_CHANNEL": ch["approvals"], "KODA_DISCORD_APPROVERS": str(APPROVER),
        "KODA_DISCORD_API_BASE": fake.api_base, "KODA_DISCORD_GATEWAY_URL": fake.gateway_url,
        "KODA_CONSOLE_PORT": str(settings.console_listen_port()), "KODA_CONSOLE_TOKEN": CONSOLE_TOKEN,
        "KODA_APPROVAL_SWEEP_INTERVAL": "0.2",
    })
    if settings.approval_signing_key:  # the gateway signs its decisions
        env["KODA_APPROVAL_SIGNING_KEY"] = settings.approval_signing_key.get_secret_value()
    return env


async def start(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "koda.services.gateway", env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def stop(proc: asyncio.subprocess.Process) -> bytes:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err


async def test_a_click_after_the_gateway_process_restarted_is_resolved(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, propose: Propose, bus: Bus,
        tmp_path: Path) -> None:
    env = gateway_env(gw_settings, fake_discord)
    proc = await start(env, tmp_path)
    try:
        record = await propose()
        message = await fake_discord.wait_for(lambda: next(
            (m for m in fake_discord.posted("approvals") if buttons(m)), None), timeout=20)
    finally:
        logs = await stop(proc)
    assert b"fake-bot-token-abcdef" not in logs

    proc = await start(env, tmp_path)
    try:
        await fake_discord.wait_for(lambda: fake_discord.identified >= 2, timeout=20)
        clicked = await fake_discord.click(message["id"], f"koda:approve:{record.id}", APPROVER)
        assert "Approved" in (await fake_discord.outcome(clicked))["content"]
    finally:
        await stop(proc)
    assert (await ApprovalStore(bus).get(record.id))[0].status == "approved"  # type: ignore[index]
    assert len(await actions_published(bus, "video.publish")) == 1
    assert len([m for m in fake_discord.posted("approvals") if "Approval needed" in m["content"]]) == 1
