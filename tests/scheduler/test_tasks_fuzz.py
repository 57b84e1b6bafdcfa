"""Hypothesis-generated tasks.json: it loads (and schedules), or every error names a field and a line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koda.services.scheduler.schedule import scheduled_tasks
from koda.shared.errors import ConfigError
from koda.shared.tasks import TasksFile, parse_tasks

PATH = Path("/home/koda/tasks.json")
junk: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def either(*good: Any) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes anything at all."""
    plausible = st.sampled_from(good)
    return st.one_of(plausible, plausible, plausible, plausible, junk)


crons = either("0 9 * * *", "*/5 * * * *", "@hourly", "@daily", "0 0 * * * *", "30 2 * * 1-5",
               "0 25 * * *", "* * *", "@fortnightly", "0 0 30 2 *", "*/0 * * * *", "5-1 * * * *",
               "0 9 * jan,jul mon", "")
task_fields: dict[str, st.SearchStrategy[Any]] = {
    "id": either("report", "daily-post", "a", "Bad Id", "x" * 70, ""),
    "enabled": either(True, False),
    "cron": crons,
    "timezone": either("UTC", "Europe/Berlin", "America/New_York", "Mars/Olympus", "../etc"),
    "prompt": either("write the report", ""),
    "skill": either("publish-video"),
    "script": either("sync-members"),
    "steps": either([{"id": "one", "prompt": "a"}, {"id": "two", "prompt": "b"}], [],
                    [{"id": "dup", "prompt": "a"}, {"id": "dup", "prompt": "b"}], [{"prompt": "no id"}]),
    "max_turns": either(25, 0, 501, 10),
    "overlap": either("skip", "queue_one", "allow", "sometimes"),
    "catch_up": either({"policy": "latest"}, {"policy": "all", "max_runs": 3},
                       {"policy": "window", "window_minutes": 30}, {"policy": "most"}, {"window": 5}),
    "jitter_seconds": either(0, 30.5, -1, 4000),
    "pause_after_failures": either(3, None, 0),
    "retries": either({"max": 2, "backoff_seconds": 30}, {"max": 99}),
    "max_turn": st.integers(),  # a typo of max_turns
}
_optional = {  # valid values only, so these tasks load and get scheduled
    "enabled": st.booleans(),
    "cron": st.sampled_from(["0 9 * * *", "*/5 * * * *", "@hourly", "0 0 * * * *", "30 2 * * 1-5",
                             "0 9 * jan,jul mon", "0 0 29 2 *"]),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    "max_turns": st.integers(1, 500),
    "overlap": st.sampled_from(["skip", "queue_one", "allow"]),
    "catch_up": st.sampled_from([{"policy": "latest"}, {"policy": "window", "window_minutes": 30}]),
    "jitter_seconds": st.floats(0, 3600),
}
tasks_strategy = st.one_of(
    # Close to a real task: an id and a prompt, and some of the other fields.
    st.fixed_dictionaries({"id": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                           "prompt": st.just("do it")}, optional=_optional),
    st.fixed_dictionaries({}, optional=task_fields),
)
files = st.fixed_dictionaries(
    {"tasks": st.one_of(st.lists(tasks_strategy, max_size=4), junk)},
    optional={"timezone": either("UTC", "Europe/Paris", "Nowhere/City"), "extra": junk},
)


def check(text: str) -> TasksFile | ConfigError:
    try:
        return parse_tasks(text, PATH)
    except ConfigError as exc:
        return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files)
def test_generated_tasks_json_loads_or_names_field_and_line(data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2)
    result = check(text)
    if isinstance(result, TasksFile):
        now = datetime(2026, 3, 8, 6, 59, tzinfo=UTC)
        for sched in scheduled_tasks(result).values():  # what loads also schedules
            nxt = sched.next_after(now)
            assert nxt is None or nxt > now
        return
    assert result.problems
    for problem in result.problems:
        assert problem.file == PATH and problem.message
        assert problem.line is not None and 1 <= problem.line <= text.count("\n") + 1
        root = problem.field.split(".")[0].split("[")[0]
        assert root in {*data, "(root)"}, problem
        assert str(problem).startswith(f"{PATH}:{problem.line}: {problem.field}: ")


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.text(max_size=3))
def test_damaged_json_gives_a_syntax_error_with_its_line(cut: int, noise: str) -> None:
    good = json.dumps({"tasks": [{"id": "a", "cron": "0 9 * * *", "prompt": "x"}]}, indent=2)
    text = good[: cut % len(good)] + noise
    result = check(text)
    if isinstance(result, ConfigError):
        assert all(p.line is not None and p.field for p in result.problems)
