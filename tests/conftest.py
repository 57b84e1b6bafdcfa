"""Fixtures every test can use: a real nats-server on a free port, settings on a temp home,
a connected bus, and a whole supervised stack.

Heavy fixtures live in `tests/stack.py` and `tests/natsserver.py` so other test packages can
import them too.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from koda.shared import approval_keys
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.natsserver import NatsServer, free_port_block
from tests.stack import Stack


@pytest.fixture(autouse=True, scope="module")
def _collect_leaks_per_module() -> Iterator[None]:
    """Collect a module's garbage when it ends: an unclosed pipe or transport it left then fails
    that module's last test (warnings are errors) instead of the whole run, at its very end, with
    no test to blame."""
    yield
    gc.collect()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server on a free port with its own store, Koda's production settings."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def approval_key_pair() -> tuple[str, str]:
    """The gateway's signing key and the matching verify key (private, public)."""
    return approval_keys.generate()


@pytest.fixture
def settings(tmp_path: Path, nats_server: NatsServer, approval_key_pair: tuple[str, str]) -> KodaSettings:
    """Settings for a temp home and state folder, pointed at the test's NATS server; the one
    process of an in-process test holds both approval keys (gateway's and actions' halves)."""
    return KodaSettings(
        approval_signing_key=SecretStr(approval_key_pair[0]),
        approval_verify_key=approval_key_pair[1],
        home=tmp_path / "home",
        state_dir=tmp_path / "state",
        nats_url=nats_server.url,
        port_base=free_port_block(7) - 1,
        heartbeat_interval=0.5,
        heartbeat_ttl=3.0,
        drain_timeout=5.0,
        max_deliver=3,
    )


@pytest.fixture
async def bus(settings: KodaSettings) -> AsyncIterator[Bus]:
    """A connected bus with every stream and bucket created."""
    connected = await Bus.connect(settings, "test", timeout=10)
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole local stack (NATS + six services under supervisord) on a temp home, shared by a
    test module; torn down with `koda down`."""
    running = Stack(tmp_path_factory.mktemp("stack"))
    running.up()
    try:
        yield running
    finally:
        running.down()
