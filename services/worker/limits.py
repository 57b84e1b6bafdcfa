"""The shared limits every worker honours: the rate-limit pause and the spend caps.

Kept in the `limits` KV under `state` as a `LimitsRecord`. A worker that hits a rate limit
writes `pause_until`; the write that starts a new pause window (no pause in force before it)
is the one that raises the alert, so ten runs hitting the same limit make one alert. Spend is
added after each session, per UTC day and month, with compare-and-set retries. The last
`RateLimitEvent` (status, reset, utilization, window type) is kept as `window` for admission.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js.kv import KeyValue

from koda.shared.kv_record import KVRecords
from koda.shared.messages import LimitsRecord, RateWindow
from koda.shared.settings import KodaSettings

KEY = "state"


@dataclass
class Refusal:
    """Why a run may not start now: `retry_in` seconds for a pause, None for a spend cap."""

    limit: str
    message: str
    retry_in: float | None


class Limits:
    """Read and change the shared limits record; remembers a pause locally as well, so this
    worker's other runs stop at once, before the KV round trip."""

    def __init__(self, kv: KeyValue, settings: KodaSettings) -> None:
        self.kv = kv
        self.records = KVRecords(kv, LimitsRecord)
        self.settings = settings
        self.local_pause_until = 0.0  # unix time
        self.last = LimitsRecord()  # the record as last read or written (for the gauges)

    async def read(self) -> tuple[LimitsRecord, int]:
        found = await self.records.get(KEY)
        return (found.value, found.revision) if found else (LimitsRecord(), 0)

    async def _write(self, record: LimitsRecord, revision: int) -> bool:
        return await self.records.write(KEY, record, revision) is not None

    def paused_for(self, record: LimitsRecord | None = None, now: float | None = None) -> float:
        """Seconds left of the rate-limit pause (0 if none)."""
        now = time.time() if now is None else now
        until = self.local_pause_until
        if record is not None and record.pause_until is not None:
            until = max(until, record.pause_until.timestamp())
        return max(0.0, until - now)

    async def check(self, now: datetime | None = None) -> Refusal | None:
        """None if a run may start now."""
        now = now or datetime.now(UTC)
        if self.paused_for(None, now.timestamp()) > 0:  # no KV read while we know we are paused
            return Refusal("rate_limit", "paused after a rate limit",
                           self.paused_for(None, now.timestamp()))
        record, _ = await self.read()
        self.last = record
        if record.pause_until is not None:
            self.local_pause_until = max(self.local_pause_until, record.pause_until.timestamp())
        left = self.paused_for(record, now.timestamp())
        if left > 0:
            return Refusal("rate_limit", record.pause_reason or "paused after a rate limit", left)
        day, month = record.spend_day.get(f"{now:%Y-%m-%d}", 0.0), record.spend_month.get(f"{now:%Y-%m}", 0.0)
        cap_day, cap_month = self.settings.spend_cap_day_usd, self.settings.spend_cap_month_usd
        if cap_day is not None and day >= cap_day:
            return Refusal("spend_day", f"daily spend cap reached (${day:.2f} of ${cap_day:.2f})", None)
        if cap_month is not None and month >= cap_month:
            return Refusal("spend_month", f"monthly spend cap reached (${month:.2f} of ${cap_month:.2f})",
                           None)
        credit = self.settings.credit_month_usd
        if credit is not None and not self.settings.credit_extra_usage and month >= credit:
            # The provider pauses requests past the credit unless extra usage is on: a run now
            # would only be refused by it, so it is refused here, saying why.
            return Refusal("credit", f"monthly credit used (${month:.2f} of ${credit:.2f}); "
                           "set KODA_CREDIT_EXTRA_USAGE=true if extra usage is on", None)
        return None

    async def pause(self, until: float, reason: str) -> bool:
        """Pause every worker until `until` (unix time). True if this started a new window
        (the caller alerts); False if a pause was already in force (it is only extended)."""
        self.local_pause_until = max(self.local_pause_until, until)
        for _ in range(10):
            record, revision = await self.read()
            now = time.time()
            current = record.pause_until.timestamp() if record.pause_until else 0.0
            new_window = current <= now
            if current >= until:
                return False
            updated = record.model_copy(update={
                "pause_until": datetime.fromtimestamp(until, UTC), "pause_reason": reason})
            if await self._write(updated, revision):
                return new_window
        return False

    async def add_spend(self, usd: float, now: datetime | None = None) -> LimitsRecord:
        """Add a session's cost to today's and this month's totals."""
        now = now or datetime.now(UTC)
        day, month = f"{now:%Y-%m-%d}", f"{now:%Y-%m}"
        record = LimitsRecord()
        for _ in range(10):
            record, revision = await self.read()
            spend_day = {k: v for k, v in record.spend_day.items() if k >= f"{now:%Y-%m}-00"}
            spend_month = dict(record.spend_month)
            spend_day[day] = round(spend_day.get(day, 0.0) + usd, 6)
            spend_month[month] = round(spend_month.get(month, 0.0) + usd, 6)
            updated = record.model_copy(update={"spend_day": spend_day, "spend_month": spend_month})
            if await self._write(updated, revision):
                self.last = updated
                return updated
        return record

    async def _change(self, change: Callable[[LimitsRecord], LimitsRecord | None]) -> bool:
        """Apply `change` compare-and-set; it returns None when nothing is to be written."""
        for _ in range(10):
            record, revision = await self.read()
            updated = change(record)
            if updated is None:
                self.last = record
                return False
            if await self._write(updated, revision):
                self.last = updated
                return True
        return False

    async def record_window(self, window: dict[str, Any]) -> None:
        """Keep the last window report (from a session's `RateLimitEvent`)."""
        resets = window.get("resets_at")
        value = RateWindow(status=str(window.get("status") or "allowed"),
                           resets_at=datetime.fromtimestamp(resets, UTC) if resets else None,
                           utilization=window.get("utilization"), window_type=window.get("window_type"))
        await self._change(lambda record: record.model_copy(update={"window": value}))

    async def claim_forecast_alert(self, month: str) -> bool:
        """True once per month, for the one worker that alerts on the forecast."""
        return await self._change(lambda record: None if record.forecast_alerted == month
                                  else record.model_copy(update={"forecast_alerted": month}))
