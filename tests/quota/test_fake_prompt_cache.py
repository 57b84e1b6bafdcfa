"""The fake API's prompt cache: identical prefixes up to a breakpoint are read, the rest written."""

from __future__ import annotations

from typing import Any

from tests.fake_anthropic import FakeAnthropic

CC = {"cache_control": {"type": "ephemeral"}}


def body(system: str, prompt: str) -> dict[str, Any]:
    return {"system": [{"type": "text", "text": "x-anthropic-billing-header: cch=1;"},
                       {"type": "text", "text": system, **CC}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt, **CC}]}]}


def test_a_repeated_prefix_is_read_and_a_changed_tail_is_written() -> None:
    api = FakeAnthropic()
    api.prompt_cache = True
    first = api.usage_for(body("S" * 4000, "run one"))
    assert first["cache_read_input_tokens"] == 0 and first["cache_creation_input_tokens"] > 1000
    second = api.usage_for(body("S" * 4000, "run two, a longer prompt"))
    assert 1000 < second["cache_read_input_tokens"] < first["cache_creation_input_tokens"]
    assert 0 < second["cache_creation_input_tokens"] < 100
    changed = api.usage_for(body("T" * 4000, "run one"))
    assert changed["cache_read_input_tokens"] == 0  # a changed system prompt misses everything after
    assert FakeAnthropic().usage_for(body("S", "x"))["input_tokens"] == 100  # off unless asked
