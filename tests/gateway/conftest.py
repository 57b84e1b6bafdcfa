"""Fixtures for the gateway: a fake Discord, a home with a secret in `.env`, and a gateway
service running in the test's event loop (so a test can stop it and start a new one)."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from koda.services.gateway.service import GatewayService
from koda.shared.approvals import ApprovalStore, new_proposal
from koda.shared.bus import Bus
from koda.shared.messages import ApprovalRecord
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.natsserver import free_port_block

with warnings.catch_warnings():
    # discord.py imports audioop (voice), deprecated since 3.11; Koda uses no voice.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord  # noqa: F401

SECRET = "sk-live-9f8e7d6c5b4a-TOPSECRET"
CONSOLE_TOKEN = "console-token-for-tests-31337"
APPROVER = 111111111111111111
STRANGER = 999999999999999999
OWNER = 222222222222222222

TASKS = {
    "timezone": "UTC",
    "tasks": [
        {"id": "publish-video", "cron": "0 9 * * *", "prompt": "Publish the week's video.",
         "gated": ["video.publish"], "approval_timeout_minutes": 60},
        {"id": "daily-post", "cron": "30 8 * * *", "prompt": "Post the daily update."},
        {"id": "chat", "prompt": "Answer the owner."},
    ],
}


@pytest.fixture
def home(settings: KodaSettings) -> Path:
    root = settings.expanded_home()
    (root / "data" / "runs").mkdir(parents=True)
    (root / "data" / "drafts").mkdir(parents=True)
    (root / "tasks.json").write_text(json.dumps(TASKS, indent=1))
    env = root / ".env"
    env.write_text(f"YOUTUBE_TOKEN={SECRET}\n")
    env.chmod(0o600)
    return root


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def gw_settings(settings: KodaSettings, home: Path, fake_discord: FakeDiscord) -> KodaSettings:
    ch = fake_discord.channels
    return settings.model_copy(update={
        "discord_token": SecretStr("fake-bot-token-abcdef"),
        "discord_guild": int(fake_discord.guild_id),
        "discord_approvals_channel": int(ch["approvals"]),
        "discord_reports_channel": int(ch["reports"]),
        "discord_alerts_channel": int(ch["alerts"]),
        "discord_chat_channel": int(ch["chat"]),
        "discord_approvers": str(APPROVER),
        "discord_owner": OWNER,
        "discord_api_base": fake_discord.api_base,
        "discord_gateway_url": fake_discord.gateway_url,
        "console_port": free_port_block(1),
        "console_token": SecretStr(CONSOLE_TOKEN),
        "approval_sweep_interval": 0.2,
    })


class RunningGateway:
    """A gateway service in this event loop; `restart()` stops it and starts a fresh one."""

    def __init__(self, settings: KodaSettings, fake: FakeDiscord | None = None) -> None:
        self.settings = settings
        self.fake = fake
        self.service: GatewayService | None = None
        self.task: asyncio.Task[int] | None = None

    async def start(self, wait_discord: bool = True) -> GatewayService:
        self._identified = self.fake.identified if self.fake else 0
        self.service = GatewayService(self.settings)
        self.task = asyncio.create_task(self.service.serve(install_signals=False))
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            if self.task.done():
                self.task.result()
            bot = self.service.bot
            if wait_discord:
                identified = self.fake.identified if self.fake else 1
                ready = bot is not None and bot.ready.is_set() and identified > self._identified
            else:
                ready = self.service._up.labels("gateway")._value.get() == 1
            if ready:
                return self.service
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("gateway did not start")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.service is not None and self.task is not None:
            self.service.stopping.set()
            assert await asyncio.wait_for(self.task, 20) == 0
            self.service = None

    async def restart(self) -> GatewayService:
        await self.stop()
        return await self.start()


@pytest.fixture
async def gateway(gw_settings: KodaSettings, fake_discord: FakeDiscord
                  ) -> AsyncIterator[RunningGateway]:
    running = RunningGateway(gw_settings, fake_discord)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


Propose = Callable[..., Awaitable[ApprovalRecord]]


@pytest.fixture
def propose(bus: Bus) -> Propose:
    """Propose an action the way the worker does: `new_proposal` + `ApprovalStore.propose`."""
    store = ApprovalStore(bus)
    counter = iter(range(1, 1000))

    async def go(action: str = "video.publish", minutes: int = 60, reason: str = "New video is ready",
                 created: datetime | None = None, artifact: str | None = None) -> ApprovalRecord:
        n = next(counter)
        record = new_proposal("publish-video", f"publish-video.m{1700000000000 + n}", action,
                              args={"video": f"drafts/video-{n}.mp4", "title": "Week 12"},
                              reason=reason, artifact=artifact or f"data/drafts/run-{n}/video.mp4",
                              timeout_minutes=minutes,
                              now=created or datetime.now(UTC))
        return await store.propose(record)

    return go


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)
