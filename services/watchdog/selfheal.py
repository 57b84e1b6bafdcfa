"""When the watchdog may spend money on an agent run to heal something: rarely, by opt-in.

A self-heal run is queued only for a failure no rule classifies, only while the `self-heal`
task is enabled in tasks.json, at most `KODA_SELF_HEAL_PER_HOUR` an hour and while today's
self-heal spend (from its run records) is under `KODA_SELF_HEAL_SPEND_DAY_USD`; never about a
self-heal run. Failures a rule does classify (config, auth, a missing secret, no handler, the
API unreachable, a full disk) get one alert per cause per hour instead: no agent can fix them.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime

from koda.shared.errors import ConfigError
from koda.shared.home import HomeLayout
from koda.shared.run_record import read_records
from koda.shared.settings import KodaSettings
from koda.shared.tasks import load_tasks

SELF_HEAL_TASK = "self-heal"
ALERT_EVERY_S = 3600.0


class SelfHealGate:
    """Decides whether an unclassified failure may get a self-heal run, and coalesces alerts."""

    def __init__(self, settings: KodaSettings, layout: HomeLayout) -> None:
        self.settings = settings
        self.layout = layout
        self.queued: deque[float] = deque()
        self.alerted: dict[str, float] = {}

    def refusal(self) -> str | None:
        """None if a self-heal run may be queued now, else why not (for the incident's trail)."""
        try:
            task = load_tasks(self.layout.tasks).get(SELF_HEAL_TASK)
        except ConfigError:
            return "tasks.json is unusable"
        if task is None or not task.enabled:
            return "the self-heal task is not enabled in tasks.json"
        now = time.monotonic()
        while self.queued and now - self.queued[0] > 3600:
            self.queued.popleft()
        if len(self.queued) >= self.settings.self_heal_per_hour:
            return f"{self.settings.self_heal_per_hour} self-heal runs in the last hour already"
        spent = self.spent_today()
        if spent >= self.settings.self_heal_spend_day_usd:
            return (f"self-heal spend today ${spent:.2f} reached its cap "
                    f"${self.settings.self_heal_spend_day_usd:.2f}")
        return None

    def took(self) -> None:
        self.queued.append(time.monotonic())

    def spent_today(self) -> float:
        """Today's self-heal spend, from the run records in the home."""
        today = datetime.now(UTC).date()
        return sum(r.cost_usd for r in read_records(self.layout.runs, pattern=f"{SELF_HEAL_TASK}.*")
                   .values() if r.finished_at.astimezone(UTC).date() == today)

    def alert_due(self, cause: str) -> bool:
        """True for the first alert of a cause, then once an hour."""
        now = time.monotonic()
        last = self.alerted.get(cause)
        if last is not None and now - last < ALERT_EVERY_S:
            return False
        self.alerted[cause] = now
        return True
