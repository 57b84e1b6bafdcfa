"""From an approver's click to the approved action on the bus, through real discord.py.

Run: `python -m bench.approval_latency`. Starts a real nats-server, the fake Discord of the tests
and the gateway service in this process, proposes N approvals the way the worker does, clicks
each Approve button, and times (a) click to the interaction's first answer (Discord fails an
interaction not answered within 3 s; the bot defers at once), (b) click to the message showing
"Approved" (what the person waits for) and (c) click to the `ActionRequest` seen on
`koda.actions.>`. Baseline in the same run: `ApprovalStore.decide` called directly (no
Discord, no gateway), decide to action seen.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from pydantic import SecretStr

from koda.shared.approvals import ApprovalStore, new_proposal
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings
from tests.fake_discord import FakeDiscord
from tests.natsserver import NatsServer, free_port_block

ROOT = Path(__file__).resolve().parent.parent

N = 50
APPROVER = 111


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(root: Path, nats: NatsServer) -> dict[str, list[float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from koda.services.gateway.service import GatewayService
    fake = FakeDiscord()
    await fake.start()
    home = root / "home"
    home.mkdir()
    settings = KodaSettings(
        home=home, state_dir=root / "state", nats_url=nats.url, port_base=free_port_block(7) - 1,
        log_level="WARNING", discord_token=SecretStr("bench-token-abcdef"),
        discord_approvals_channel=int(fake.channels["approvals"]), discord_approvers=str(APPROVER),
        discord_api_base=fake.api_base, discord_gateway_url=fake.gateway_url,
        console_port=free_port_block(1), console_token=SecretStr("bench-console-token"))
    bus = await Bus.connect(settings, "bench", timeout=10)
    seen: dict[str, float] = {}

    async def on_action(msg: object) -> None:
        seen[json.loads(msg.data)["approval_id"]] = time.perf_counter()  # type: ignore[attr-defined]

    await bus.nc.subscribe("koda.actions.>", cb=on_action)
    await bus.nc.flush()
    service = GatewayService(settings)
    runner = asyncio.create_task(service.serve(install_signals=False))
    await fake.wait_for(lambda: service.bot is not None and service.bot.ready.is_set()
                        and fake.identified, timeout=30)
    store = ApprovalStore(bus)
    answer: list[float] = []
    outcome: list[float] = []
    action: list[float] = []
    direct: list[float] = []
    try:
        for i in range(N):
            record = await store.propose(new_proposal("bench", f"bench.m{i}", "video.publish"))
            message = await fake.wait_for(lambda r=record: next(
                (m for m in fake.posted("approvals") if r.id in m["content"]), None), timeout=30)
            start = time.perf_counter()
            iid = await fake.click(message["id"], f"koda:approve:{record.id}", APPROVER)
            await fake.wait_for(lambda i=iid: i in fake.responses, timeout=10)
            answer.append(fake.response_times[iid] - start)
            assert fake.responses[iid]["type"] == 6, fake.responses[iid]  # deferred update
            await fake.outcome(iid)
            outcome.append(time.perf_counter() - start)
            await fake.wait_for(lambda r=record: r.id in seen, timeout=10)
            action.append(seen[record.id] - start)
        for i in range(N):
            record = await store.propose(new_proposal("bench", f"bench.d{i}", "video.publish"))
            start = time.perf_counter()
            await store.decide(record.id, True, str(APPROVER))
            await fake.wait_for(lambda r=record: r.id in seen, timeout=10)
            direct.append(seen[record.id] - start)
    finally:
        service.stopping.set()
        await runner
        await bus.close()
        await fake.stop()
    return {"click_to_answer": answer, "click_to_outcome": outcome, "click_to_action": action,
            "direct_decide": direct}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp) / "nats")
        nats.start()
        try:
            samples = asyncio.run(measure(Path(tmp), nats))
        finally:
            nats.stop()
    print(f"{'path':<22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    table = {}
    for name, values in samples.items():
        ms = [v * 1000 for v in values]
        table[name] = {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(pct(ms, 0.99), 2),
                       "max_ms": round(max(ms), 2), "n": len(ms)}
        print(f"{name:<22} {table[name]['p50_ms']:>8.2f} {table[name]['p99_ms']:>8.2f} "
              f"{table[name]['max_ms']:>8.2f}")
    overhead = table["click_to_action"]["p50_ms"] - table["direct_decide"]["p50_ms"]
    result = {**table, "gateway_overhead_p50_ms": round(overhead, 2), "discord_answer_limit_ms": 3000}
    out = ROOT / "bench" / "results" / "approval_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"RESULT approval_latency click_to_answer_p99_ms={table['click_to_answer']['p99_ms']} "
          f"click_to_action_p50_ms={table['click_to_action']['p50_ms']} "
          f"direct_decide_p50_ms={table['direct_decide']['p50_ms']} "
          f"gateway_overhead_p50_ms={result['gateway_overhead_p50_ms']} n={N}")


if __name__ == "__main__":
    main()
