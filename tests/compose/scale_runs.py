"""The scale-out check of tests/compose/e2e.sh, run inside the gateway container (as its NATS user):

    python - queue N TASK < scale_runs.py     queue N runs at once; print each run's id, then each
                                              (run, worker) the ledger shows running, then the end
    python - count RUN_ID... < scale_runs.py  how many run.finished / run.failed events each run has

Every line is one JSON object. `queue` ends when every run is terminal in the ledger (exit 0) or
after its timeout (exit 1); the audit log's count says whether any run finished twice.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError

from koda.shared.bus import Bus
from koda.shared.messages import RUN_TERMINAL, Event, RunLedgerEntry, RunRequest, new_run_id
from koda.shared.settings import KodaSettings

TIMEOUT = 300.0


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def ends_per_run(bus: Bus, run_ids: list[str]) -> Counter[str]:
    """run.finished and run.failed events per run, read from the whole audit log."""
    counts: Counter[str] = Counter()
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    sub = await bus.js.subscribe("koda.events.run.*", ordered_consumer=True, config=config)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except Exception:
                break
            event = Event.from_bytes(msg.data)
            if event.event in ("run.finished", "run.failed") and event.run_id in run_ids:
                counts[event.run_id] += 1
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return counts


async def queue(bus: Bus, count: int, task: str) -> int:
    now = datetime.now(UTC)
    run_ids = [new_run_id(task, "manual", now + timedelta(milliseconds=i)) for i in range(count)]
    for run_id in run_ids:
        request = RunRequest(task=task, run_id=run_id, scheduled_for=now, trigger="manual",
                             requested_by="compose e2e")
        await bus.publish(f"koda.runs.{task}", request, msg_id=run_id)
    say(queued=run_ids)
    kv = await bus.js.key_value("runs")
    seen: set[tuple[str, str]] = set()
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        entries: dict[str, RunLedgerEntry] = {}
        for run_id in run_ids:
            try:
                item = await kv.get(run_id)
            except KeyNotFoundError:
                continue
            if item.value:
                entries[run_id] = RunLedgerEntry.from_bytes(item.value)
        for run_id, entry in entries.items():
            if entry.status == "running" and (run_id, entry.worker) not in seen:
                seen.add((run_id, entry.worker))
                say(running=run_id, worker=entry.worker)
        if len(entries) == count and all(e.status in RUN_TERMINAL for e in entries.values()):
            say(end={r: {"status": e.status, "worker": e.worker, "claims": e.claims}
                     for r, e in entries.items()})
            return 0
        if asyncio.get_running_loop().time() > deadline:
            say(timeout={r: (entries[r].status if r in entries else None) for r in run_ids})
            return 1
        await asyncio.sleep(0.5)


async def main(argv: list[str]) -> int:
    bus = await Bus.connect(KodaSettings(), "cli", timeout=10)
    try:
        if argv[0] == "queue":
            return await queue(bus, int(argv[1]), argv[2])
        say(ends=dict(await ends_per_run(bus, argv[1:])))
        return 0
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
