"""The console slows guessers down, per client and overall, on every credential path (login form,
Bearer header, session cookie), while the right token still gets in at once from anywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from koda.shared.home import init_home
from koda.shared.settings import KodaSettings
from tests.gateway.conftest import RunningGateway
from tests.natsserver import free_port_block

TOKEN = "console-token-for-guessing-tests-4f9d8c2b7a61e3"


@pytest.fixture
async def console(settings: KodaSettings) -> AsyncIterator[str]:
    s = settings.model_copy(update={"discord_token": None, "console_port": free_port_block(1),
                                    "console_token": SecretStr(TOKEN)})
    init_home(s)
    running = RunningGateway(s)
    await running.start(wait_discord=False)
    try:
        yield f"http://127.0.0.1:{s.console_listen_port()}"
    finally:
        await running.stop()


def from_address(address: str, url: str) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any 127.x address reaches the console)."""
    return httpx.AsyncClient(base_url=url, timeout=120, follow_redirects=False,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def guess(client: httpx.AsyncClient, i: int) -> int:
    """One wrong guess, by turns through each credential path."""
    kind = i % 3
    if kind == 0:
        r = await client.get("/", headers={"Authorization": f"Bearer wrong-{i}"})
    elif kind == 1:
        r = await client.post("/login", data={"token": f"wrong-{i}"})
    else:
        r = await client.get("/", headers={"Cookie": f"koda_session=nonce{i}.{'0' * 64}"})
    return r.status_code


async def test_sixty_guesses_are_slow_and_the_right_token_is_not(console: str) -> None:
    async with from_address("127.0.0.1", console) as attacker, from_address("127.0.0.2", console) as owner:
        started = time.monotonic()
        guesses = [asyncio.create_task(guess(attacker, i)) for i in range(60)]
        # While the guesses queue up, the owner logs in from another address, at once.
        await asyncio.wait(guesses, return_when=asyncio.FIRST_COMPLETED)
        t = time.monotonic()
        ok = await owner.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        login = await owner.post("/login", data={"token": TOKEN})
        owner_took = time.monotonic() - t
        answered_meanwhile = sum(g.done() for g in guesses)
        codes = await asyncio.gather(*guesses)
        took = time.monotonic() - started
    assert ok.status_code == 200 and login.status_code == 303, (ok.status_code, login.status_code)
    assert owner_took < 2.0, owner_took
    assert answered_meanwhile < 10, answered_meanwhile
    assert set(codes) == {401}, codes
    # One wrong answer per half second per client: 60 guesses take about 30 s (3 s before).
    assert took > 25, took


async def test_many_clients_together_are_slowed_overall(console: str) -> None:
    clients = [from_address(f"127.0.0.{10 + i}", console) for i in range(40)]
    try:
        started = time.monotonic()
        codes = await asyncio.gather(*(guess(c, 0) for c in clients))
        took = time.monotonic() - started
    finally:
        for c in clients:
            await c.aclose()
    assert set(codes) == {401}
    # One guess each from 40 addresses: ten wrong answers a second overall, so about 4 s.
    assert took > 3.5, took


@pytest.mark.parametrize("token", ["hunter2", "a" * 64, "Console-2026!"])
def test_a_weak_chosen_token_is_refused_outside_development(token: str) -> None:
    with pytest.raises(ValidationError, match=r"KODA_CONSOLE_TOKEN holds about .* bits; at least 128"):
        KodaSettings(env="production", console_token=SecretStr(token))
    KodaSettings(env="development", console_token=SecretStr(token))  # a laptop may use anything


def test_a_strong_token_or_none_is_accepted_in_production() -> None:
    KodaSettings(env="production", console_token=SecretStr(TOKEN))
    KodaSettings(env="production")
