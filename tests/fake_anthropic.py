"""A scripted fake of the Anthropic Messages API, for the real Claude Code CLI.

It is a real HTTP server (a thread, so it works under any event loop and across processes)
that speaks `POST /v1/messages` both streamed (server-sent events, as the CLI uses it) and
plain JSON, answers with scripted text and tool_use turns or with 429s, and records every
request body it received.

Usage::

    with FakeAnthropic(script=tool_loop(3, final="all done")) as api:
        env = api.env()            # ANTHROPIC_BASE_URL, ANTHROPIC_API_KEY, ...
        ...                        # run the CLI
        assert api.main_calls()    # every request the agent loop made, bodies as dicts

A *script* is any callable `Call -> Reply`; `Call` describes the request (the system prompt,
the first user prompt, how many assistant turns the conversation already holds, the last
tool result). Replies are `Text`, `ToolUse` (one or more tool calls in one turn) and `Status`
(an HTTP error such as a 429). `rate_limit(seconds)` makes every request fail with 429 until
that much time has passed, whatever the script says.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-ant-fake-test-key-0000"
MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True)
class Text:
    """An assistant turn that says `text` and ends the turn."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """An assistant turn calling one or more tools: `calls` is a list of (name, input)."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    text: str = ""

    @classmethod
    def one(cls, tool: str, /, **tool_input: Any) -> ToolUse:
        """One call of `tool` with `tool_input` as its input."""
        return cls(((tool, tool_input),))


@dataclass(frozen=True)
class Status:
    """An HTTP error answer, e.g. `Status(429, retry_after=30)`."""

    code: int
    retry_after: float | None = None
    message: str = "rate limited"


Reply = Text | ToolUse | Status


@dataclass
class Call:
    """One request as the script sees it."""

    body: dict[str, Any]
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def system(self) -> str:
        """The system prompt as one string (it may arrive as a list of text blocks)."""
        return _text_of(self.body.get("system"))

    @property
    def prompt(self) -> str:
        """The text of the first user message (the task prompt)."""
        for message in self.messages:
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    @property
    def turn(self) -> int:
        """How many assistant turns the conversation already has (0 on the first request)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def is_main(self) -> bool:
        """True for the agent loop's own requests (they offer tools); false for side calls
        such as titles or summaries the CLI may make."""
        return bool(self.body.get("tools"))

    def last_tool_result(self) -> str:
        """The text of the newest tool_result block, or '' if there is none."""
        for message in reversed(self.messages):
            content = message.get("content")
            if isinstance(content, list):
                for block in reversed(content):
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        return _text_of(block.get("content"))
        return ""

    def raw(self) -> str:
        """The whole body as JSON text: search it for anything that must never be sent."""
        return json.dumps(self.body)


Script = Callable[[Call], Reply]


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        if "text" in value:
            return str(value["text"])
        if "content" in value:
            return _text_of(value["content"])
    return ""


# --- ready-made scripts -----------------------------------------------------------------------


def say(text: str = "done") -> Script:
    """Answer every request with one text turn."""
    return lambda call: Text(text)


def tool_loop(turns: int, *, tool: str = "Bash", tool_input: dict[str, Any] | None = None,
              final: str = "done") -> Script:
    """Call `tool` for `turns` turns, then answer `final`. Cheap turns: `echo` by default."""
    args = tool_input if tool_input is not None else {"command": "echo ok", "description": "echo"}

    def script(call: Call) -> Reply:
        if call.turn < turns:
            return ToolUse.one(tool, **args)
        return Text(final)

    return script


def sequence(*replies: Reply, then: Reply | None = None) -> Script:
    """Answer by conversation turn: turn i gets replies[i]; later turns get `then` (or the last)."""

    def script(call: Call) -> Reply:
        if call.turn < len(replies):
            return replies[call.turn]
        return then if then is not None else replies[-1]

    return script


# --- the server --------------------------------------------------------------------------------


class FakeAnthropic:
    """The fake API server. Start with `start()` or `with`; `url` is its base URL."""

    def __init__(self, script: Script | None = None, *, side_reply: str = "ok",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.script: Script = script or say()
        # Loopback unless a test's own network needs it elsewhere (the compose end-to-end test
        # listens on its private network namespace's host side).
        self.host, self.port = host, port
        self.side_reply = side_reply
        self.calls: list[Call] = []
        self.rejected: list[Call] = []
        self._lock = threading.Lock()
        self._limited_until = 0.0
        self._retry_after: float | None = None
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(_Handler):
            api = fake

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{self.host}:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """What the CLI needs to talk to this fake and nothing else."""
        return {
            "ANTHROPIC_BASE_URL": self.url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    # behaviour ---------------------------------------------------------------------------------

    def rate_limit(self, seconds: float, retry_after: float | None = None) -> None:
        """Answer every request with a 429 for the next `seconds`."""
        with self._lock:
            self._limited_until = time.monotonic() + seconds
            self._retry_after = retry_after if retry_after is not None else seconds

    def limited(self) -> bool:
        return time.monotonic() < self._limited_until

    # what was received -------------------------------------------------------------------------

    def main_calls(self) -> list[Call]:
        """Every agent-loop request received (answered or rejected), in order."""
        with self._lock:
            return [c for c in self.calls if c.is_main]

    def all_text(self) -> str:
        """Every request body ever received, as one string."""
        with self._lock:
            return "\n".join(c.raw() for c in self.calls)

    def calls_between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if start <= c.at < end]

    def _reply_for(self, call: Call) -> Reply:
        with self._lock:
            self.calls.append(call)
            if time.monotonic() < self._limited_until:
                self.rejected.append(call)
                return Status(429, retry_after=self._retry_after)
        if not call.is_main:
            return Text(self.side_reply)
        return self.script(call)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"


class _Handler(BaseHTTPRequestHandler):
    api: FakeAnthropic
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._json(200, {"data": [], "has_more": False})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "bad json"}})
            return
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            self._json(200, {"input_tokens": 100})
            return
        if not path.endswith("/v1/messages"):
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
            return
        call = Call(body=body, path=self.path, headers=dict(self.headers.items()))
        reply = self.api._reply_for(call)
        if isinstance(reply, Status):
            self._error(reply)
            return
        model = str(body.get("model") or MODEL)
        blocks = self._blocks(reply)
        stop = "tool_use" if isinstance(reply, ToolUse) else "end_turn"
        if body.get("stream"):
            self._stream(model, blocks, stop)
        else:
            self._json(200, self._message(model, blocks, stop))

    # answers -------------------------------------------------------------------------------------

    def _blocks(self, reply: Text | ToolUse) -> list[dict[str, Any]]:
        if isinstance(reply, Text):
            return [{"type": "text", "text": reply.text}]
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        for name, tool_input in reply.calls:
            blocks.append({"type": "tool_use", "id": self.api.next_id("toolu"), "name": name,
                           "input": tool_input})
        return blocks

    def _message(self, model: str, blocks: list[dict[str, Any]], stop: str) -> dict[str, Any]:
        return {"id": self.api.next_id("msg"), "type": "message", "role": "assistant",
                "model": model, "content": blocks, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 10,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}

    def _stream(self, model: str, blocks: list[dict[str, Any]], stop: str) -> None:
        message = self._message(model, [], None)  # type: ignore[arg-type]
        message["usage"]["output_tokens"] = 1
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message})]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": {"type": "text", "text": ""}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta",
                                                                 "text": block["text"]}}))
            else:
                start = {**block, "input": {}}
                events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": start}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta",
                                                                 "partial_json": json.dumps(
                                                                     block["input"])}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": 10}}))
        events.append(("message_stop", {"type": "message_stop"}))
        payload = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
        data = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", self.api.next_id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, reply: Status) -> None:
        kind = "rate_limit_error" if reply.code == 429 else "api_error"
        data = json.dumps({"type": "error", "error": {"type": kind, "message": reply.message}}).encode()
        self.send_response(reply.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if reply.retry_after is not None:
            self.send_header("retry-after", str(max(1, round(reply.retry_after))))
        self.send_header("x-should-retry", "true" if reply.code == 429 or reply.code >= 500 else "false")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def iter_tool_names(calls: list[Call]) -> Iterator[str]:
    """Names of the tools offered in the given requests (useful to check what the agent may use)."""
    for call in calls:
        for tool in call.body.get("tools") or []:
            yield str(tool.get("name"))
