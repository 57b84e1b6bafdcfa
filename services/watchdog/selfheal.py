"""When the watchdog may spend money on an agent run to heal something: rarely, by opt-in.

A self-heal run is queued only for a failure no rule classifies, only while the `self-heal`
task is enabled in tasks.json (or, while it is broken, in its last good version: the `config`
KV), at most `KODA_SELF_HEAL_PER_HOUR` an hour and while today's
self-heal spend (from its run records) is under `KODA_SELF_HEAL_SPEND_DAY_USD`; never about a
self-heal run. Failures a rule does classify (config, auth, a missing secret, no handler, the
API unreachable, a full disk) get one alert per cause per hour instead: no agent can fix them.
Both bounds live in the `limits` KV (`selfheal`), not in memory: a restarted watchdog (a crash
loop of its own, an upgrade) does not get a fresh hour of runs and alerts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js.kv import KeyValue

from koda.shared.home import HomeLayout
from koda.shared.kv_record import KVRecords
from koda.shared.lastgood import LastGood
from koda.shared.messages import SelfHealRecord
from koda.shared.run_record import read_records
from koda.shared.settings import KodaSettings
from koda.shared.tasks import TasksFile

SELF_HEAL_TASK = "self-heal"
ALERT_EVERY_S = 3600.0
KEY = "selfheal"
HOUR = timedelta(hours=1)


class SelfHealGate:
    """Decides whether an unclassified failure may get a self-heal run, and coalesces alerts."""

    def __init__(self, settings: KodaSettings, layout: HomeLayout, limits: KeyValue,
                 tasks: LastGood[TasksFile], config: KeyValue) -> None:
        self.settings = settings
        self.layout = layout
        self.tasks, self.config = tasks, config
        self.records = KVRecords(limits, SelfHealRecord)

    async def queued(self) -> list[datetime]:
        """When self-heal runs were queued in the last hour."""
        found = await self.records.get(KEY)
        now = datetime.now(UTC)
        return [t for t in found.value.queued if now - t < HOUR] if found else []

    async def refusal(self) -> str | None:
        """None if a self-heal run may be queued now, else why not (for the incident's trail)."""
        tasks = await self.tasks.current(self.config)
        if tasks is None:
            return "tasks.json is unusable and no good version of it was ever seen"
        task = tasks.get(SELF_HEAL_TASK)
        if task is None or not task.enabled:
            return "the self-heal task is not enabled in tasks.json"
        if len(await self.queued()) >= self.settings.self_heal_per_hour:
            return f"{self.settings.self_heal_per_hour} self-heal runs in the last hour already"
        spent = self.spent_today()
        if spent >= self.settings.self_heal_spend_day_usd:
            return (f"self-heal spend today ${spent:.2f} reached its cap "
                    f"${self.settings.self_heal_spend_day_usd:.2f}")
        return None

    async def took(self) -> None:
        now = datetime.now(UTC)

        def add(record: SelfHealRecord | None) -> SelfHealRecord:
            record = record or SelfHealRecord()
            recent = [t for t in record.queued if now - t < HOUR]
            return record.model_copy(update={"queued": [*recent, now]})

        await self.records.change(KEY, add)

    def spent_today(self) -> float:
        """Today's self-heal spend, from the run records in the home."""
        today = datetime.now(UTC).date()
        return sum(r.cost_usd for r in read_records(self.layout.runs, pattern=f"{SELF_HEAL_TASK}.*")
                   .values() if r.finished_at.astimezone(UTC).date() == today)

    async def alert_due(self, cause: str) -> bool:
        """True for the first alert of a cause, then once an hour."""
        now = datetime.now(UTC)

        def due(record: SelfHealRecord | None) -> SelfHealRecord | None:
            record = record or SelfHealRecord()
            last = record.alerted.get(cause)
            if last is not None and (now - last).total_seconds() < ALERT_EVERY_S:
                return None  # not due: nothing written
            alerted = {c: t for c, t in record.alerted.items()
                       if (now - t).total_seconds() < ALERT_EVERY_S}
            return record.model_copy(update={"alerted": {**alerted, cause: now}})

        return await self.records.change(KEY, due) is not None
