"""The bot's link to Discord: a refused command sync costs only the commands, a final close
code stops the bot once with what to do, and a failing gateway never nears 1,000 IDENTIFYs a
day."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from koda.services.gateway.discord_link import IdentifyBudget
from koda.services.gateway.service import GatewayService
from koda.shared.bus import Bus
from koda.shared.doctor import check_discord
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord

from .conftest import Propose, RunningGateway
from .helpers import all_events, buttons, eventually


async def _discord_alerts(bus: Bus, text: str) -> list:
    return [e for e in await all_events(bus)
            if e.event == "alert" and e.data.get("kind") == "discord" and text in e.summary]


async def test_a_refused_command_sync_leaves_approvals_and_reports_working(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, propose: Propose, bus: Bus) -> None:
    settings = gw_settings.model_copy(update={"discord_guild": 4242424242})  # not the bot's
    record = await propose()
    running = RunningGateway(settings, fake_discord)
    service = await running.start()
    try:
        message = await fake_discord.wait_for(lambda: next(
            (m for m in fake_discord.posted("approvals") if buttons(m)), None))
        assert record.id in message["content"]
        await bus.emit(bus.event("agent.notify", "still here", data={"text": "still here"}))
        await fake_discord.wait_for(lambda: fake_discord.posted("reports"))
        commands = service.health_detail()["discord_commands"]
        assert "4242424242" in commands and "50001" in commands and "not in that guild" in commands
        async def connected() -> bool:
            return bool(service.health_detail()["discord"] == "connected")
        await eventually(connected)
        assert len(await eventually(lambda: _discord_alerts(bus, "50001"))) == 1
        problems = check_discord(settings.expanded_state())
        assert [p.field for p in problems] == ["discord commands"]
        assert "KODA_DISCORD_GUILD" in problems[0].message
    finally:
        await running.stop()


@pytest.mark.parametrize("code", [4014, 4004, 4013])
async def test_a_final_close_code_stops_the_bot_once_and_says_what_to_do(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, bus: Bus, code: int) -> None:
    if code == 4014:
        fake_discord.granted_intents = 0  # Message Content off in the Developer Portal
    else:
        fake_discord.refuse_identify = code  # 4004: the token was reset after login
    running = RunningGateway(gw_settings, fake_discord)
    service = await running.start(wait_discord=False)
    try:
        async def stopped() -> bool:
            return str(code) in service.health_detail()["discord"]
        await eventually(stopped, timeout=20)
        health = service.health_detail()["discord"]
        assert {4014: "MESSAGE CONTENT INTENT", 4004: "Reset Token",
                4013: "Upgrade Koda"}[code] in health
        assert fake_discord.close_codes == [code]
        alerts = await eventually(lambda: _discord_alerts(bus, str(code)))
        assert len(alerts) == 1 and alerts[0].severity == "error"
        problems = check_discord(gw_settings.expanded_state())
        assert len(problems) == 1 and str(code) in problems[0].message
        assert service.bot is not None and service.bot.is_closed()
        assert fake_discord.identifies == 1
    finally:
        await running.stop()


class VirtualClock:
    """Time that passes only when the budget waits: a day of waiting takes no real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.parametrize("failure", [4000, 1000, 4009, 9])
async def test_a_flapping_gateway_costs_far_fewer_than_1000_identifies_a_day(
        gw_settings: KodaSettings, fake_discord: FakeDiscord, failure: int) -> None:
    # Every session ends right after READY (closed with an "unknown error", a plain close, a
    # session timeout, or op 9 Invalid Session) and cannot be resumed: the worst case, where
    # each reconnect must IDENTIFY again (discord.py alone would do so every 5 s: 17,280 a day).
    fake_discord.close_after_ready = failure
    clock = VirtualClock()
    service = GatewayService(gw_settings)
    service.link.budget = IdentifyBudget(clock=clock.time, sleep=clock.sleep)
    task = asyncio.create_task(service.serve(install_signals=False))
    try:
        await fake_discord.wait_for(lambda: clock.now >= IdentifyBudget.DAY, timeout=120)
        per_day = fake_discord.identifies
        assert 10 <= per_day <= 100, per_day  # it kept trying, at a pace Discord tolerates
        assert service.link.budget.used_today() <= 100
        assert fake_discord.identified == per_day  # each one was a real, accepted IDENTIFY
    finally:
        service.stopping.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_a_gateway_restarted_over_and_over_keeps_backing_off(tmp_path: Path) -> None:
    clock = VirtualClock()
    path = tmp_path / "discord-identifies.json"
    crashed = IdentifyBudget(clock=clock.time, sleep=clock.sleep, path=path)
    for _ in range(4):
        await crashed.acquire()  # four sessions that each failed at once
    # The process dies without a clean stop; the next one remembers the run of failures.
    restarted = IdentifyBudget(clock=clock.time, sleep=clock.sleep, path=path)
    assert restarted.wait() == 40.0 and restarted.used_today() == 4
    restarted.clean_stop()
    assert IdentifyBudget(clock=clock.time, sleep=clock.sleep, path=path).wait() == 0.0
