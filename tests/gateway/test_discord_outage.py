"""Discord unreachable or refusing the token: the gateway keeps its console and approvals going,
and the bot joins when Discord comes back."""

from __future__ import annotations

import logging

import httpx
import pytest

from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.natsserver import free_port_block

from .conftest import Propose, RunningGateway
from .helpers import buttons, eventually


async def test_the_bot_connects_once_discord_is_back(
        gw_settings: KodaSettings, propose: Propose) -> None:
    fake = FakeDiscord()
    fake.port = free_port_block(1)  # nothing listens there yet
    ch = fake.channels
    settings = gw_settings.model_copy(update={
        "discord_api_base": fake.api_base, "discord_gateway_url": fake.gateway_url,
        "discord_approvals_channel": int(ch["approvals"]), "discord_guild": int(fake.guild_id)})
    running = RunningGateway(settings)
    service = await running.start(wait_discord=False)
    try:
        console = f"http://127.0.0.1:{settings.console_listen_port()}"
        async with httpx.AsyncClient(base_url=console) as http:
            assert (await http.get("/login")).status_code == 200
        record = await propose()

        async def failing() -> bool:
            return service.discord_error is not None
        await eventually(failing)
        assert service.health_detail()["discord"] not in ("connected", "off")

        await fake.start(fake.port)
        try:
            await fake.wait_for(lambda: fake.identified, timeout=15)
            message = await fake.wait_for(lambda: next(
                (m for m in fake.posted("approvals") if buttons(m)), None))
            assert record.id in message["content"]
        finally:
            await running.stop()
            await fake.stop()
    finally:
        await running.stop()


async def test_a_refused_token_leaves_the_console_running(
        gw_settings: KodaSettings, fake_discord: FakeDiscord,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake_discord.valid_token = "the-real-token-xyz"
    running = RunningGateway(gw_settings, fake_discord)
    service = await running.start(wait_discord=False)
    try:
        async def refused() -> bool:
            return (service.discord_error or "").startswith("login refused")
        await eventually(refused)
        assert service.health_detail()["discord"].startswith("login refused")
        console = f"http://127.0.0.1:{gw_settings.console_listen_port()}"
        async with httpx.AsyncClient(base_url=console) as http:
            assert (await http.get("/login")).status_code == 200
    finally:
        await running.stop()
    assert "fake-bot-token-abcdef" not in caplog.text
