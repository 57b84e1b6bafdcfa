"""Self-heal agent runs are opt-in and bounded; classified failures get one alert per cause."""

from __future__ import annotations

import json
from typing import Any

from koda.services.watchdog.service import WatchdogService
from koda.shared.bus import Bus
from koda.shared.home import HomeLayout, init_home
from koda.shared.messages import RunRequest
from koda.shared.settings import KodaSettings
from tests.inprocess import serving
from tests.worker.conftest import Events

FAILURES: list[tuple[str, dict[str, Any]]] = [
    ("post", {"outcome": "failed", "error": "script post needs SOCIAL_API_KEY", "cause": "missing_secret"}),
    ("post2", {"outcome": "failed", "error": "script post needs SOCIAL_API_KEY", "cause": "missing_secret"}),
    ("publish", {"outcome": "failed", "error": "no script lists action x", "cause": "no_handler"}),
    ("long", {"outcome": "turn_cap", "error": "reached the turn cap (25 turns)"}),
    ("login", {"outcome": "failed", "error": "Not logged in · Please run /login"}),
    ("api", {"outcome": "failed", "error": "API Error: Connection error."}),
    ("api2", {"outcome": "failed", "error": "API Error: Connection error."}),
    ("tasks", {"outcome": "failed", "error": "tasks.json unusable", "cause": "config"}),
]


def set_self_heal(settings: KodaSettings, enabled: bool) -> None:
    path = HomeLayout(settings.expanded_home()).tasks
    data = json.loads(path.read_text())
    for task in data["tasks"]:
        if task["id"] == "self-heal":
            task["enabled"] = enabled
    path.write_text(json.dumps(data))


async def fail(bus: Bus, task: str, data: dict[str, Any], n: int) -> None:
    await bus.emit(bus.event("run.failed", f"{task} failed", task=task, run_id=f"{task}.m{n}",
                             data=data))


async def test_ordinary_failures_queue_no_agent_and_alert_once_per_cause(
        settings: KodaSettings, bus: Bus, events: Events) -> None:
    init_home(settings)
    set_self_heal(settings, enabled=True)  # even enabled: these have rules
    heals: list[RunRequest] = []

    async def on_heal(msg: Any) -> None:
        heals.append(RunRequest.from_bytes(msg.data))

    sub = await bus.nc.subscribe("koda.runs.self-heal", cb=on_heal)
    async with serving(WatchdogService(settings)) as watchdog:
        for n, (task, data) in enumerate(FAILURES):
            await fail(bus, task, data, n)
        await bus.nc.flush()
        await events.wait(lambda: len(events.of("alert")) >= 5, 30)
        # One more unclassified failure, to know every earlier one was handled.
        await fail(bus, "odd", {"outcome": "failed", "error": "the frobnicator sulks"}, 99)
        await events.wait(lambda: bool(heals), 30)
        assert len(await watchdog.self_heal.queued()) == 1
    await sub.unsubscribe()
    kinds = sorted(e.data["reason"] for e in events.of("alert"))
    # missing_secret x2 -> 1, Connection error x2 -> 1; turn cap -> none.
    assert kinds == ["config", "credentials or session rejected", "missing_secret", "no_handler",
                     "temporary failure"], kinds
    assert [h.context["untrusted_evidence"]["log_tail"] for h in heals] == [
        ["the frobnicator sulks"]]


async def test_self_heal_is_opt_in_bounded_and_never_about_itself(
        settings: KodaSettings, bus: Bus, events: Events) -> None:
    def refused(why: str) -> list[Any]:
        return [e for e in events.of("heal.step") if "no self-heal run" in e.summary
                and why in e.summary]

    init_home(settings)
    settings = settings.model_copy(update={"self_heal_per_hour": 2})
    heals: list[RunRequest] = []

    async def on_heal(msg: Any) -> None:
        heals.append(RunRequest.from_bytes(msg.data))

    sub = await bus.nc.subscribe("koda.runs.self-heal", cb=on_heal)
    async with serving(WatchdogService(settings)) as watchdog:
        set_self_heal(settings, enabled=False)  # the template's default
        await fail(bus, "odd", {"outcome": "failed", "error": "the frobnicator sulks"}, 1)
        await events.wait(lambda: refused("not enabled"), 10)
        set_self_heal(settings, enabled=True)
        await fail(bus, "self-heal", {"outcome": "failed", "error": "the frobnicator sulks"}, 9)
        for n in range(2, 8):
            await fail(bus, f"odd{n}", {"outcome": "failed", "error": "the frobnicator sulks"}, n)
        # Two runs, then the hourly cap refuses the other four.
        await events.wait(lambda: len(refused("in the last hour")) >= 4, 30)
        assert len(await watchdog.self_heal.queued()) == 2
        await bus.nc.flush()
    # A restarted watchdog keeps the hour's count (it lives in NATS, not in its memory).
    async with serving(WatchdogService(settings)):
        await fail(bus, "odd9", {"outcome": "failed", "error": "the frobnicator sulks"}, 10)
        await events.wait(lambda: len(refused("in the last hour")) >= 5, 30)
        await bus.nc.flush()
    await sub.unsubscribe()
    assert len(heals) == 2
    assert all(h.prompt and "task:odd" in h.prompt for h in heals), heals
