"""The worker's side of quota and cost: admission before a run, accounting after it.

Before: `admit` asks `admission.admit` with the budget from settings, the spend and the last
window report from the limits record, and the task's recent cost, and emits `run.admission`
with the decision and its reason (also kept as `admission.<task>` in the `limits` KV for
`koda tasks`). After: `account` keeps the window report, counts tokens and
cost per task and model, and once a month alerts when the forecast passes the credit.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from koda.shared import cron
from koda.shared.bus import Bus
from koda.shared.events import AdmissionEvent, AlertEvent
from koda.shared.home import HomeLayout
from koda.shared.messages import AdmissionRecord, RunRequest
from koda.shared.settings import KodaSettings
from koda.shared.tasks import Task, TasksFile

from .admission import Admission, Budget, Usage, admit, left
from .forecast import Forecast, RecentCosts, forecast_month, scheduled_need
from .limits import Limits
from .pipeline import RunOutcome

log = logging.getLogger(__name__)
#: Triggers where a person waits for the answer: they draw on the reserve like critical tasks.
INTERACTIVE = frozenset({"chat", "manual", "watchdog"})
#: Seconds between forecasts: runs may end every few seconds, the month changes slowly.
FORECAST_EVERY = 60.0


def budget_of(settings: KodaSettings) -> Budget:
    return Budget(credit_month=settings.credit_month_usd, cap_day=settings.spend_cap_day_usd,
                  cap_month=settings.spend_cap_month_usd, reserve=settings.reserve_usd,
                  busy_utilization=settings.admission_utilization,
                  reduced_turns=settings.admission_reduced_turns)


class Quota:
    """Admission and cost accounting for one worker."""

    def __init__(self, bus: Bus, settings: KodaSettings, limits: Limits, layout: HomeLayout,
                 registry: CollectorRegistry) -> None:
        self.bus, self.settings, self.limits, self.layout = bus, settings, limits, layout
        self.budget = budget_of(settings)
        self._recent: RecentCosts | None = None
        self.forecast: Forecast | None = None
        self._forecast_at = 0.0
        r = registry
        self.m_admission = Counter("koda_admission_total", "Admission decisions",
                                   ["task", "priority", "decision"], registry=r)
        self.m_tokens = Counter("koda_tokens_total", "Model tokens", ["task", "model", "kind"],
                                registry=r)
        self.m_model_cost = Counter("koda_model_cost_usd_total", "Model spend by model",
                                    ["task", "model"], registry=r)
        Gauge("koda_rate_limit_window_utilization", "Window utilization (0..1) last reported",
              registry=r).set_function(lambda: self._window("utilization"))
        Gauge("koda_rate_limit_window_resets_at_seconds", "When the window resets (unix time)",
              registry=r).set_function(lambda: self._window("resets_at"))
        Gauge("koda_credit_usd", "Monthly credit (0 = none)", registry=r) \
            .set(settings.credit_month_usd or 0)
        Gauge("koda_credit_left_usd", "Credit, or the tightest cap, left", registry=r) \
            .set_function(self._left)
        Gauge("koda_reserve_usd", "Kept for critical and chat runs", registry=r).set(settings.reserve_usd)
        Gauge("koda_spend_forecast_usd", "Forecast spend of the month", registry=r) \
            .set_function(lambda: self.forecast.total if self.forecast else 0.0)
        self.m_task_forecast = Gauge("koda_spend_forecast_task_usd",
                                     "Forecast spend of the rest of the month, by task", ["task"],
                                     registry=r)

    # --- gauges ------------------------------------------------------------------------------

    def usage(self, now: datetime) -> Usage:
        record = self.limits.last
        window = record.window
        return Usage(spend_day=record.spend_day.get(f"{now:%Y-%m-%d}", 0.0),
                     spend_month=record.spend_month.get(f"{now:%Y-%m}", 0.0),
                     utilization=window.utilization if window else None,
                     resets_at=window.resets_at.timestamp() if window and window.resets_at else None)

    def _window(self, key: str) -> float:
        usage = self.usage(datetime.now(UTC))
        value = usage.utilization if key == "utilization" else usage.resets_at
        return float(value or 0.0)

    def _left(self) -> float:
        room, _ = left(self.budget, self.usage(datetime.now(UTC)))
        return max(0.0, room) if room is not None else 0.0

    def recent(self) -> RecentCosts:
        if self._recent is None:
            self._recent = RecentCosts.from_records(self.layout.runs)
        return self._recent

    # --- before a run ------------------------------------------------------------------------

    async def admit(self, task: Task, request: RunRequest, tasks: TasksFile | None) -> Admission:
        """Decide (the limits record was just read by `Limits.check`) and say so in an event."""
        now = datetime.now(UTC)
        spec = task.cron_spec() if task.enabled else None
        zone = tasks.timezone if tasks else "UTC"
        fire = cron.next_fire(spec, now, task.zone(zone)) if spec else None

        def need(until: float) -> float:  # asked only when the reserve would be touched
            return scheduled_need(tasks, self.recent(), now, datetime.fromtimestamp(until, UTC)) \
                if tasks else 0.0

        decision = admit(task.priority, interactive=request.trigger in INTERACTIVE,
                         max_turns=task.max_turns, cheaper_model=task.cheaper_model,
                         expected_cost=self.recent().mean(task.id), budget=self.budget,
                         usage=self.usage(now), now=now.timestamp(),
                         next_fire=fire.timestamp() if fire else None,
                         scheduled_need=need if tasks else None)
        self.m_admission.labels(task.id, task.priority, decision.decision).inc()
        record = AdmissionRecord(task=task.id, run_id=request.run_id, priority=task.priority,
                                 **decision.as_data())  # type: ignore[arg-type]
        try:
            await self.limits.kv.put(f"admission.{task.id}", record.to_bytes())
        except Exception as exc:  # only `koda tasks` reads it: never fail a run for it
            log.warning("could not keep the admission record: %s", exc)
        await self.bus.emit(self.bus.event(
            "run.admission", f"{task.id}: {decision.decision} ({decision.reason})"[:300],
            task=task.id, run_id=request.run_id,
            severity="info", data=AdmissionEvent(priority=task.priority, trigger=request.trigger,
                                            **decision.as_data())))  # type: ignore[arg-type]
        return decision

    # --- after a run -------------------------------------------------------------------------

    async def account(self, task: Task, outcome: RunOutcome, tasks: TasksFile | None) -> None:
        """Window report, tokens and cost by model, recent cost, and the forecast check."""
        if outcome.window:
            await self.limits.record_window(outcome.window)
        for model, usage in outcome.models.items():
            fresh = usage["input"]
            for kind, value in (("input", fresh), ("output", usage["output"]),
                                ("cache_read", usage["cache_read"]),
                                ("cache_write", usage["cache_write"])):
                if value:
                    self.m_tokens.labels(task.id, model, kind).inc(value)
            if usage["cost_usd"]:
                self.m_model_cost.labels(task.id, model).inc(usage["cost_usd"])
        if outcome.outcome != "rate_limited":
            self.recent().add(task.id, outcome.cost_usd)
        if tasks is not None:
            await self.check_forecast(tasks)

    async def check_forecast(self, tasks: TasksFile) -> Forecast | None:
        if time.monotonic() - self._forecast_at < FORECAST_EVERY and self.forecast is not None:
            return self.forecast
        self._forecast_at = time.monotonic()
        now = datetime.now(UTC)
        forecast = forecast_month(tasks, self.recent(), self.usage(now).spend_month, now)
        self.forecast = forecast
        for task_id, usd in forecast.per_task.items():
            self.m_task_forecast.labels(task_id).set(usd)
        limit = self.settings.credit_month_usd or self.settings.spend_cap_month_usd
        if limit is not None and forecast.total > limit \
                and await self.limits.claim_forecast_alert(forecast.month):
            top = ", ".join(f"{t} ${usd:.2f}" for t, usd in forecast.costliest())
            await self.bus.emit(self.bus.event(
                "alert", f"Spend forecast ${forecast.total:.2f} passes the month's ${limit:.2f}: "
                f"costliest {top}"[:300], severity="warning",
                data=AlertEvent(kind="spend_forecast", forecast_usd=forecast.total, limit_usd=limit,
                                spent_usd=forecast.spent, costliest=dict(forecast.costliest()),
                                at=time.time())))
        return forecast

