"""A cron schedule in words, for `koda tasks` and the console: "at 09:00 on Monday to Friday"."""

from __future__ import annotations

from .cron import CronSpec, parse

DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December"]


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _spans(values: tuple[int, ...], names: dict[int, str] | None = None) -> str:
    """`(1, 2, 3, 5)` as "1 to 3 and 5" (with names when given)."""
    label = (lambda v: names[v]) if names else str
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    parts: list[str] = []
    for run in runs:
        parts += [f"{label(run[0])} to {label(run[-1])}"] if len(run) > 2 else [label(v) for v in run]
    return _join(parts)


def _step(values: tuple[int, ...], low: int, high: int) -> int | None:
    """n when `values` is exactly low, low+n, ... (a `*/n` field), else None."""
    if len(values) < 2 or values[0] != low:
        return None
    n = values[1] - values[0]
    return n if values == tuple(range(low, high + 1, n)) else None


def _time_part(spec: CronSpec) -> str:
    secs, mins, hours = spec.seconds, spec.minutes, spec.hours
    every_min, every_hour = len(mins) == 60, len(hours) == 24
    if secs != (0,):
        step = _step(secs, 0, 59)
        sec_text = ("every second" if len(secs) == 60 else f"every {step} seconds" if step
                    else f"at second {_spans(secs)}")
        if every_min and every_hour:
            return sec_text
        return f"{sec_text}, " + _time_part(CronSpec(**{**spec.__dict__, "seconds": (0,)}))
    if every_hour:
        if every_min:
            return "every minute"
        step = _step(mins, 0, 59)
        if step:
            return f"every {step} minutes"
        return "every hour" if mins == (0,) else f"every hour at minute {_spans(mins)}"
    if len(mins) * len(hours) <= 6:
        return "at " + _join([f"{h:02d}:{m:02d}" for h in hours for m in mins])
    hour_step = _step(hours, 0, 23)
    if hour_step and mins == (0,):
        return f"every {hour_step} hours"
    plural = "s" if len(hours) > 1 else ""
    hour_text = f"every {hour_step} hours" if hour_step else f"of hour{plural} {_spans(hours)}"
    minute_text = "every minute" if every_min else (
        f"at minute{'s' if len(mins) > 1 else ''} {_spans(mins)}")
    return f"{minute_text} {hour_text}"


def _day_part(spec: CronSpec) -> str:
    days = f"on day{'s' if len(spec.days) > 1 else ''} {_spans(spec.days)} of the month"
    weekdays = "on " + _spans(spec.weekdays, dict(enumerate(DAY_NAMES)))
    if spec.day_restricted and spec.weekday_restricted:
        text = f"{days} or {weekdays}"
    elif spec.day_restricted:
        text = days
    elif spec.weekday_restricted and len(spec.weekdays) < 7:
        text = weekdays
    else:
        text = "every day"
    if len(spec.months) < 12:
        text += " in " + _spans(spec.months, dict(enumerate(MONTH_NAMES, start=1)))
    return text


def describe(spec: CronSpec, timezone: str | None = None) -> str:
    """The schedule in plain English, with its zone: "at 09:00 every day (Europe/Berlin)"."""
    time_part = _time_part(spec)
    day_part = _day_part(spec)
    every_day = day_part == "every day"
    text = time_part if every_day and time_part.startswith("every") else f"{time_part} {day_part}"
    return f"{text} ({timezone})" if timezone else text


def describe_expression(expression: str, timezone: str | None = None) -> str:
    """`describe` for an expression as written in tasks.json."""
    return describe(parse(expression), timezone)
