"""Cron expressions: parsing with precise errors, and DST-correct next fire times.

Syntax: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first;
`*`, `a-b`, `*/n`, `a-b/n`, lists, month and weekday names, 7 for Sunday, and the aliases
@yearly @annually @monthly @weekly @daily @midnight @hourly. When both day fields are
restricted a day matches either (classic cron).

Daylight saving time follows classic (Vixie) cron. A schedule with a fixed hour fires once per
matching day whatever the clock does: a wall-clock time skipped by a spring-forward fires at the
instant the clock jumps, and one repeated by a fall-back fires at its first occurrence. A schedule
whose hour field is `*` follows the real hours instead: nothing extra for the skipped hour, and a
fire in each of the two real hours a fall-back repeats.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .errors import KodaError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names)
_FIELDS = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
]
_SEARCH_YEARS = 8  # a schedule with no fire in 8 years (Feb 30) never fires


class CronError(KodaError, ValueError):
    """A cron expression that cannot be parsed; says which field and why."""


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the sorted allowed values of each field."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def day_matches(self, d: datetime) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow


def _parse_value(token: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    key = token.lower()
    if key in names:
        return names[key]
    if not token.isdigit():
        raise CronError(f"{field}: {token!r} is not a number" + (
            f" or a name ({', '.join(names)})" if names else ""))
    value = int(token)
    if not low <= value <= high:
        raise CronError(f"{field}: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _parse_value(a, field, low, high, names)
            end = _parse_value(b, field, low, high, names)
            if start > end:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            start = _parse_value(base, field, low, high, names)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def parse(expression: str) -> CronSpec:
    """Parse a cron expression or alias; raises `CronError` naming the faulty field."""
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError(f"unknown alias {text!r}; use one of {', '.join(ALIASES)}")
        text = ALIASES[text.lower()]
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CronError(f"expected 5 fields (or 6 with seconds first), got {len(parts)}")
    sets = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = {0 if d == 7 else d for d in sets[5]}
    spec = CronSpec(
        expression=expression,
        seconds=tuple(sorted(sets[0])),
        minutes=tuple(sorted(sets[1])),
        hours=tuple(sorted(sets[2])),
        days=tuple(sorted(sets[3])),
        months=tuple(sorted(sets[4])),
        weekdays=tuple(sorted(weekdays)),
        day_restricted=not parts[3].startswith("*"),
        weekday_restricted=not parts[5].startswith("*"),
    )
    if next_wall_time(spec, datetime(2000, 1, 1)) is None:
        raise CronError("this schedule never fires (no such date)")
    return spec


def _next_in(values: tuple[int, ...], current: int) -> int | None:
    i = bisect.bisect_left(values, current)
    return values[i] if i < len(values) else None


def next_wall_time(spec: CronSpec, start: datetime) -> datetime | None:
    """The first naive wall-clock time at or after `start` that the spec matches."""
    t = start.replace(microsecond=0)
    limit = start.year + _SEARCH_YEARS
    while t.year <= limit:
        if t.month not in spec.months:
            m = _next_in(spec.months, t.month)
            t = datetime(t.year, m, 1) if m else datetime(t.year + 1, spec.months[0], 1)
            continue
        if not spec.day_matches(t):
            t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            continue
        if t.hour not in spec.hours:
            h = _next_in(spec.hours, t.hour)
            t = t.replace(hour=h, minute=0, second=0) if h is not None else (
                datetime(t.year, t.month, t.day) + timedelta(days=1))
            continue
        if t.minute not in spec.minutes:
            m = _next_in(spec.minutes, t.minute)
            t = t.replace(minute=m, second=0) if m is not None else (
                t.replace(minute=0, second=0) + timedelta(hours=1))
            continue
        if t.second not in spec.seconds:
            s = _next_in(spec.seconds, t.second)
            t = t.replace(second=s) if s is not None else (
                t.replace(second=0) + timedelta(minutes=1))
            continue
        return t
    return None


def _instants(spec: CronSpec, wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The real instants (UTC) at which a matching wall-clock time fires."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
    if exists:  # repeated by a fall-back
        both = sorted([first.astimezone(UTC), second.astimezone(UTC)])
        return both if spec.every_hour else both[:1]
    if spec.every_hour:  # skipped by a spring-forward: an hourly schedule just moves on
        return []
    # Skipped by a spring-forward: fire when the clock jumps, found by bisection over seconds.
    lo = int(second.astimezone(UTC).timestamp())
    hi = int(first.astimezone(UTC).timestamp())
    pre = datetime.fromtimestamp(lo, UTC).astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == pre:
            lo = mid
        else:
            hi = mid
    return [datetime.fromtimestamp(hi, UTC)]


def next_fire(spec: CronSpec, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first fire instant strictly after `after` (aware), as an aware UTC datetime."""
    after = after.astimezone(UTC)
    local = after.astimezone(tz).replace(tzinfo=None)
    # Fast path: no clock change within two hours of `after` and the candidate is unambiguous.
    offset = after.astimezone(tz).utcoffset()
    if all((after + timedelta(hours=h)).astimezone(tz).utcoffset() == offset for h in (-2, 2)):
        wall = next_wall_time(spec, local + timedelta(seconds=1))
        if wall is None:
            return None
        instants = _instants(spec, wall, tz)
        if len(instants) == 1 and wall.replace(tzinfo=tz).utcoffset() == offset:
            return instants[0]
    # Start two hours of wall time back: a fall-back repeats wall times already passed.
    cursor: datetime | None = local - timedelta(hours=2)
    best: datetime | None = None
    horizon: datetime | None = None
    while cursor is not None:
        wall = next_wall_time(spec, cursor)
        if wall is None or (horizon is not None and wall > horizon):
            break
        for instant in _instants(spec, wall, tz):
            if instant > after and (best is None or instant < best):
                best = instant
                horizon = wall + timedelta(hours=3)
        cursor = wall + timedelta(seconds=1)
    return best


def fires_between(spec: CronSpec, start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every fire instant in (start, end], in order."""
    out: list[datetime] = []
    t = start
    while True:
        nxt = next_fire(spec, t, tz)
        if nxt is None or nxt > end:
            return out
        out.append(nxt)
        t = nxt
