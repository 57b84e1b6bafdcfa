"""Without supervisord (compose), one NATS restart is one incident, not one per service."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from koda.services.actions.service import ActionsService
from koda.services.watchdog.service import WatchdogService
from koda.shared.bus import Bus
from koda.shared.home import init_home
from koda.shared.settings import KodaSettings
from tests.inprocess import serving
from tests.natsserver import NatsServer
from tests.worker.conftest import Events


@pytest.mark.timeout(240)
async def test_one_nats_restart_is_one_incident(
        settings: KodaSettings, nats_server: NatsServer, bus: Bus, events: Events) -> None:
    init_home(settings)
    async with AsyncExitStack() as stack:
        watchdog = await stack.enter_async_context(serving(WatchdogService(settings)))
        await stack.enter_async_context(serving(ActionsService(settings)))
        await asyncio.to_thread(nats_server.stop)
        await asyncio.sleep(settings.heartbeat_ttl + 1)  # the outage: every heartbeat lapses
        await asyncio.to_thread(nats_server.start)
        reports = lambda: [e for e in events.items  # noqa: E731
                           if e.event in ("incident.resolved", "alert")]
        # The report comes when every service heartbeats again (their KV watch resumes).
        await events.wait(lambda: any(e.data.get("incident") == "nats" for e in reports()), 120)
        assert not watchdog.incidents
    [report] = reports()
    assert report.event == "incident.resolved" and report.data["class"] == "transient", report
    assert {"actions", "watchdog"} <= set(report.data["services"]), report.data
