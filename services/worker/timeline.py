"""The worker's side of a run transcript (shared/transcript.py): one writer per run.

It is fed the SDK's message stream as it arrives (`on_message`), plus the pipeline's steps and
the tools' approvals and artifacts, and appends one JSON line per entry, flushed at once, so the
console and `koda show` follow a run while it goes. It never depends on the CLI's own session
files (their folder moves with `CLAUDE_CONFIG_DIR`). Every text is redacted before it is
written; a write that fails is logged once and never fails the run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from koda.shared.transcript import fold, transcript_path

log = logging.getLogger(__name__)


class Timeline:
    """Appends a run's entries to `<state>/transcripts/<run id>.jsonl` (kept across deliveries)."""

    def __init__(self, state_dir: Path, run_id: str, redact: Callable[[str], str]) -> None:
        self.path = transcript_path(state_dir, run_id)
        self.redact = redact
        self.turn = 0
        self._message_id: str | None = None
        self._usage: dict[str, int] = {}
        self._tool_names: dict[str, str] = {}
        self._open = False  # a turn whose tokens are not written yet
        self._broken = False

    # --- writing ---------------------------------------------------------------------------

    def add(self, kind: str, **fields: Any) -> None:
        if self.path is None or self._broken:
            return
        entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "kind": kind, **fields}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = json.dumps(entry, default=str, ensure_ascii=False) + "\n"
            # One write of a whole line in append mode: a reader never sees two lines interleave.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        except OSError as exc:
            self._broken = True
            log.warning("run transcript not written: %s", exc, extra={"path": str(self.path)})

    def _text(self, value: Any) -> dict[str, Any]:
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        cut, full = fold(self.redact(text))
        return {"text": cut, **({"folded": full} if full else {})}

    # --- what the service and pipeline report -----------------------------------------------

    def step(self, step: str, index: int) -> None:
        self.add("step", step=step, index=index)

    def session_end(self, result: Any) -> None:
        self._close_turn()
        self.add("session", outcome=result.outcome, turns=result.turns,
                 cost_usd=round(result.cost_usd, 6), input_tokens=result.input_tokens,
                 output_tokens=result.output_tokens, duration_s=round(result.duration_s, 3),
                 error=self.redact(result.error) if result.error else None)

    # --- the SDK message stream ------------------------------------------------------------

    async def on_message(self, message: Any) -> None:
        from claude_agent_sdk import (
            AssistantMessage,
            SystemMessage,
            TextBlock,
            ToolResultBlock,
            ToolUseBlock,
            UserMessage,
        )

        if isinstance(message, AssistantMessage):
            if not self._open or message.message_id is None \
                    or message.message_id != self._message_id:
                self._close_turn()
                self.turn += 1
                self._message_id, self._open = message.message_id, True
            self._keep_usage(message.usage)
            for block in message.content:
                if isinstance(block, TextBlock) and block.text.strip():
                    self.add("text", turn=self.turn, **self._text(block.text))
                elif isinstance(block, ToolUseBlock):
                    self._tool_names[block.id] = block.name
                    self.add("tool", turn=self.turn, id=block.id, name=block.name,
                             input=self._text(block.input))
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, ToolResultBlock):
                    self.add("tool_result", id=block.tool_use_id,
                             name=self._tool_names.get(block.tool_use_id),
                             is_error=bool(block.is_error), output=self._text(_result_text(block.content)))
        elif isinstance(message, SystemMessage) and message.subtype == "api_retry":
            status = message.data.get("error_status")
            self.add("notice", text=f"API error {status}; the CLI retries")

    def _keep_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        tokens = {
            "input_tokens": int(usage.get("input_tokens") or 0)
            + int(usage.get("cache_read_input_tokens") or 0)
            + int(usage.get("cache_creation_input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0)}
        # The CLI repeats a response's usage on each of its blocks; the largest is the final one.
        for key, value in tokens.items():
            self._usage[key] = max(self._usage.get(key, 0), value)

    def _close_turn(self) -> None:
        if self._open:
            self.add("turn", turn=self.turn, input_tokens=self._usage.get("input_tokens", 0),
                     output_tokens=self._usage.get("output_tokens", 0))
        self._message_id, self._usage, self._open = None, {}, False


def _result_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for item in content:
        if isinstance(item, dict) and item.get("type") == "text":
            parts.append(str(item.get("text", "")))
        elif isinstance(item, dict):
            parts.append(f"({item.get('type', 'content')})")
    return "\n".join(parts)
