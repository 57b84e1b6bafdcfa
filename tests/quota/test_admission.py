"""Admission decides per priority from the credit left, the spend and the window."""

from __future__ import annotations

from datetime import UTC, datetime

from koda.services.worker.admission import RESET_MARGIN, Admission, Budget, Usage, admit

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC).timestamp()
BUDGET = Budget(credit_month=100.0, cap_day=10.0, cap_month=120.0, reserve=2.0,
                busy_utilization=0.8, reduced_turns=6)


def decide(priority: str, usage: Usage, *, interactive: bool = False, cheaper: str | None = None,
           expected: float = 0.5):
    return admit(priority, interactive=interactive, max_turns=25, cheaper_model=cheaper,
                 expected_cost=expected, budget=BUDGET, usage=usage, now=NOW)


def test_with_room_everything_runs_as_written() -> None:
    usage = Usage(spend_day=1.0, spend_month=20.0, utilization=0.3, resets_at=NOW + 3600)
    for priority in ("critical", "normal", "background"):
        a = decide(priority, usage)
        assert a.decision == "run" and a.max_turns is None and a.model is None, a


def test_busy_window_holds_background_until_after_reset_and_shrinks_normal() -> None:
    usage = Usage(spend_day=1.0, spend_month=20.0, utilization=0.93, resets_at=NOW + 5400)
    held = decide("background", usage)
    assert held.decision == "wait" and held.wait_until == NOW + 5400 + RESET_MARGIN
    assert "93%" in held.reason
    reduced = decide("normal", usage, cheaper="claude-haiku-4-5")
    assert (reduced.decision, reduced.max_turns, reduced.model) == ("reduce", 6, "claude-haiku-4-5")
    assert decide("normal", usage).model is None  # no cheaper model named: only fewer turns
    assert decide("critical", usage).decision == "run"
    assert decide("background", usage, interactive=True).decision == "run"


def test_reserve_near_the_day_cap_holds_background_until_tomorrow() -> None:
    usage = Usage(spend_day=7.8, spend_month=20.0)  # $2.20 left today, reserve $2, run ~$0.50
    held = decide("background", usage)
    assert held.decision == "wait"
    assert held.wait_until == datetime(2026, 12, 3, tzinfo=UTC).timestamp()
    assert "day cap" in held.reason and "reserve $2.00" in held.reason
    assert decide("normal", usage).decision == "reduce"
    assert decide("critical", usage).decision == "run"


def test_reserve_near_the_month_credit_holds_background_until_next_month() -> None:
    usage = Usage(spend_day=0.0, spend_month=98.0)
    held = decide("background", usage)
    assert held.wait_until == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert "credit" in held.reason


def test_a_window_that_already_reset_holds_nothing() -> None:
    usage = Usage(utilization=0.99, resets_at=NOW - 1)
    assert decide("background", usage).decision == "run"


def test_a_background_run_whose_next_fire_comes_first_is_skipped_not_queued() -> None:
    usage = Usage(utilization=0.93, resets_at=NOW + 5400)
    every_15_min = admit("background", interactive=False, max_turns=25, cheaper_model=None,
                         expected_cost=0.1, budget=BUDGET, usage=usage, now=NOW,
                         next_fire=NOW + 900)
    assert every_15_min.decision == "skip" and every_15_min.wait_until is None
    daily = admit("background", interactive=False, max_turns=25, cheaper_model=None,
                  expected_cost=0.1, budget=BUDGET, usage=usage, now=NOW, next_fire=NOW + 86400)
    assert daily.decision == "wait"


MONTH_END = datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def near_renewal(now: float, need: float, asked: list[float]) -> Admission:
    def scheduled_need(until: float) -> float:
        asked.append(until)
        return need
    return admit("background", interactive=False, max_turns=25, cheaper_model=None,
                 expected_cost=0.5, budget=BUDGET, usage=Usage(spend_month=98.0), now=now,
                 scheduled_need=scheduled_need)


def test_the_reserve_is_released_before_the_credit_renews_when_the_forecast_leaves_room() -> None:
    # $2 of the credit left, reserve $2: held mid-month. Two hours before the credit renews,
    # the scheduled critical and normal runs need $0.30 and the unscheduled share of the
    # reserve is 2/24 of it: $0.47 is kept, so a $0.50 background run goes on.
    asked: list[float] = []
    released = near_renewal(MONTH_END - 7200, 0.3, asked)
    assert released.decision == "run", released
    assert "reserve released" in released.reason and "$0.47 kept" in released.reason
    assert asked == [MONTH_END]  # the forecast is asked up to the credit's renewal
    held = near_renewal(MONTH_END - 7200, 1.4, [])  # $1.57 kept: the reserve holds
    assert held.decision == "wait" and held.wait_until == MONTH_END
    mid_month = near_renewal(NOW, 0.0, [])  # a month ahead, chat may still need all of it
    assert mid_month.decision == "wait"


def test_a_busy_window_in_its_last_minutes_is_used_not_held() -> None:
    closing = Usage(utilization=0.93, resets_at=NOW + 300)
    assert decide("background", closing).decision == "run"
    assert "resets in 300s" in decide("background", closing).reason
    assert decide("normal", closing).decision == "run"
    full = Usage(utilization=1.0, resets_at=NOW + 300)  # nothing left of it: wait for the reset
    assert decide("background", full).decision == "wait"
    short = Usage(spend_month=98.0, utilization=0.93, resets_at=NOW + 300)  # the budget still holds
    assert decide("background", short).decision == "wait"
