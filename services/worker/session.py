"""One Claude Agent SDK session, reduced to an outcome the pipeline can act on.

Outcomes: `done`; `turn_cap` (the CLI's `error_max_turns`); `budget` (`error_max_budget_usd`);
`awaiting_approval` (the guard hook deferred a gated call: `deferred` holds it);
`rate_limited` (a 429, an `api_retry` carrying a 429, or a rejected `RateLimitEvent`: the session
is stopped at once instead of letting the CLI retry into the limit); `timeout`; `error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SessionResult:
    """What one session did."""

    outcome: str
    text: str = ""
    turns: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    session_id: str | None = None
    error: str | None = None
    resets_at: float | None = None  # unix time the rate limit lifts, when the API said
    retry_after: float | None = None
    duration_s: float = 0.0
    stderr: list[str] = field(default_factory=list)
    #: The last `RateLimitEvent`: status, resets_at, utilization, window_type (None: none came).
    window: dict[str, Any] | None = None
    #: Per model: input, output, cache_read, cache_write tokens and cost_usd (the CLI's modelUsage).
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The call a PreToolUse hook deferred (id, name, input): the session waits for a person.
    deferred: dict[str, Any] | None = None
    #: Transcript batches the SDK could not mirror to NATS (a paused session needs them all).
    mirror_errors: int = 0


def _window(info: Any) -> dict[str, Any]:
    """What a `RateLimitInfo` says about the window; utilization from its own window's reading
    when the top level leaves it out (the CLI reports it per window under `unifiedWindows`)."""
    kind = info.rate_limit_type
    utilization = info.utilization
    windows = (info.raw or {}).get("unifiedWindows") or {}
    if utilization is None and isinstance(windows.get(kind or ""), dict):
        utilization = windows[kind].get("utilization")
    if utilization is None and windows:
        utilization = max((w.get("utilization") or 0.0) for w in windows.values() if isinstance(w, dict))
    return {"status": info.status, "resets_at": float(info.resets_at) if info.resets_at else None,
            "utilization": float(utilization) if utilization is not None else None,
            "window_type": kind}


def _models(result: SessionResult, model_usage: dict[str, Any] | None) -> None:
    for model, usage in (model_usage or {}).items():
        row = result.models.setdefault(model, {"input": 0, "output": 0, "cache_read": 0,
                                               "cache_write": 0, "cost_usd": 0.0})
        row["input"] += int(usage.get("inputTokens") or 0)
        row["output"] += int(usage.get("outputTokens") or 0)
        row["cache_read"] += int(usage.get("cacheReadInputTokens") or 0)
        row["cache_write"] += int(usage.get("cacheCreationInputTokens") or 0)
        row["cost_usd"] += float(usage.get("costUSD") or 0.0)


def _usage(result: SessionResult, usage: dict[str, Any] | None) -> None:
    if usage:
        result.input_tokens += int(usage.get("input_tokens") or 0) + int(
            usage.get("cache_read_input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        result.output_tokens += int(usage.get("output_tokens") or 0)


async def run_session(prompt: str | None, options: Any, *, timeout: float,
                      on_message: Callable[[Any], Awaitable[None]] | None = None) -> SessionResult:
    """Run `prompt` with `options` to its end, a limit, or a rate limit. Without a prompt,
    `options.resume` names a session paused at a deferred call: the CLI replays that call."""
    from claude_agent_sdk import (
        AssistantMessage,
        ClaudeSDKClient,
        MirrorErrorMessage,
        RateLimitEvent,
        ResultMessage,
        SystemMessage,
        TextBlock,
    )

    result = SessionResult(outcome="error")
    started = time.monotonic()
    last_text = ""
    seen_result = False
    # The client (not `query()`) because leaving it closes the CLI and every stream at once,
    # also when we stop early on a rate limit.
    process: Any = None
    try:
        async with asyncio.timeout(timeout), ClaudeSDKClient(options=options) as client:
            process = _cli_process(client)
            if prompt is not None:
                await client.query(prompt)
            async for message in client.receive_response():
                if on_message is not None:
                    await on_message(message)
                if isinstance(message, MirrorErrorMessage):
                    result.mirror_errors += 1
                elif isinstance(message, AssistantMessage):
                    texts = [b.text for b in message.content if isinstance(b, TextBlock)]
                    if texts:
                        last_text = "\n".join(texts)
                elif isinstance(message, SystemMessage):
                    if message.subtype == "init":
                        result.session_id = message.data.get("session_id")
                    elif message.subtype == "api_retry" and message.data.get("error_status") == 429:
                        result.outcome, result.error = "rate_limited", "429 from the API"
                        delay = message.data.get("retry_delay_ms")
                        result.retry_after = float(delay) / 1000 if delay else None
                        await _interrupt(client)
                        break
                elif isinstance(message, RateLimitEvent):
                    info = message.rate_limit_info
                    result.window = _window(info)
                    if info.status == "rejected":
                        result.outcome, result.error = "rate_limited", f"{info.rate_limit_type} limit"
                        result.resets_at = float(info.resets_at) if info.resets_at else None
                        await _interrupt(client)
                        break
                elif isinstance(message, ResultMessage):
                    seen_result = True
                    _finish(result, message, last_text)
    except TimeoutError:
        result.outcome, result.error = "timeout", f"time limit of {timeout:.0f}s reached"
    except Exception as exc:
        if not seen_result and result.outcome != "rate_limited":
            result.outcome, result.error = "error", f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        await _close_pipes(process)
    if result.outcome != "rate_limited" and not seen_result and result.outcome == "error" \
            and result.error is None:
        result.error = "the session ended without a result"
    if not result.text:
        result.text = last_text
    result.duration_s = time.monotonic() - started
    return result


def _cli_process(client: Any) -> Any:
    """The CLI's process (anyio's `Process`), reached through the SDK's private fields; None if
    they moved in a later SDK (then `_close_pipes` does nothing, as before)."""
    return getattr(getattr(client, "_transport", None), "_process", None)


async def _close_pipes(process: Any) -> None:
    """Close the CLI's pipes once the client is gone.

    The SDK reaps the CLI but never closes its stdout pipe: when a session is cut short (a
    cancel, a time limit, a rate limit) nobody reads that pipe to its end, so each such session
    left an open pipe and transport behind until garbage collection, in a worker that runs
    for months. anyio's `Process.aclose()` closes the streams and their pipe transports."""
    if process is None:
        return
    try:
        if process.returncode is None:  # the SDK's close was itself cut short
            process.kill()
        async with asyncio.timeout(5):
            await process.aclose()
    except Exception as exc:
        log.debug("closing the CLI's pipes failed: %r", exc)


async def _interrupt(client: Any) -> None:
    """Abort the CLI's pending retry now: closing alone gives it seconds to send one more."""
    try:
        async with asyncio.timeout(2):
            await client.interrupt()
    except Exception as exc:
        log.debug("interrupt failed: %r", exc)


def _finish(result: SessionResult, message: Any, last_text: str) -> None:
    result.turns = int(message.num_turns or 0)
    result.cost_usd = float(message.total_cost_usd or 0.0)
    result.session_id = message.session_id or result.session_id
    _usage(result, message.usage)
    _models(result, message.model_usage)
    result.text = message.result or last_text
    subtype = message.subtype
    deferred = getattr(message, "deferred_tool_use", None)
    if deferred is not None:
        result.deferred = {"id": deferred.id, "name": deferred.name, "input": deferred.input}
        if result.mirror_errors:
            result.outcome = "error"
            result.error = "the paused session's transcript could not be saved to NATS"
        else:
            result.outcome, result.error = "awaiting_approval", None
    elif subtype == "error_max_turns":
        result.outcome, result.error = "turn_cap", f"reached the turn cap ({result.turns} turns)"
    elif subtype == "error_max_budget_usd":
        result.outcome, result.error = "budget", f"session budget spent (${result.cost_usd:.4f})"
    elif message.is_error and message.api_error_status == 429:
        result.outcome, result.error = "rate_limited", "429 from the API"
    elif message.is_error:
        result.outcome = "error"
        result.error = "; ".join(message.errors or []) or result.text or subtype
    else:
        result.outcome = "done"
