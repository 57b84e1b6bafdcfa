"""The monthly credit: a hard stop, as the provider's is, unless extra usage is on; then only
the month cap holds and admission keeps background work for the next month."""

from __future__ import annotations

from datetime import UTC, datetime

from koda.services.worker.admission import Usage, admit
from koda.services.worker.limits import Limits
from koda.services.worker.quota import budget_of
from koda.shared.bus import Bus
from koda.shared.settings import KodaSettings

NOW = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)


async def test_the_credit_stops_runs_unless_extra_usage_is_on(settings: KodaSettings, bus: Bus) -> None:
    kv = bus.kv["limits"]
    credit = settings.model_copy(update={"credit_month_usd": 10.0, "spend_cap_month_usd": 15.0})
    limits = Limits(kv, credit)
    await limits.add_spend(9.5, now=NOW)
    assert await limits.check(NOW) is None  # $0.50 of the credit left
    await limits.add_spend(0.6, now=NOW)
    refused = await limits.check(NOW)
    assert refused is not None and refused.limit == "credit" and refused.retry_in is None
    assert "$10.10 of $10.00" in refused.message and "KODA_CREDIT_EXTRA_USAGE" in refused.message

    extra = Limits(kv, credit.model_copy(update={"credit_extra_usage": True}))
    assert await extra.check(NOW) is None  # past the credit, billed as extra usage
    usage = Usage(spend_month=10.1)
    held = admit("background", interactive=False, max_turns=10, cheaper_model=None,
                 expected_cost=0.1, budget=budget_of(extra.settings), usage=usage,
                 now=NOW.timestamp())
    assert held.decision == "wait" and "credit" in held.reason
    assert held.wait_until == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    await extra.add_spend(5.0, now=NOW)
    capped = await extra.check(NOW)  # the month cap still holds
    assert capped is not None and capped.limit == "spend_month"
