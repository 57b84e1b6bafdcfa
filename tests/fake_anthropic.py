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

`window(...)` makes every answer carry the subscription limiter's `anthropic-ratelimit-unified-*`
headers (status, reset, representative claim, and the five-hour window's utilization and reset),
as Anthropic's API sends them to a Claude subscription: the CLI turns them into the SDK's
`RateLimitEvent`. A `rejected` window also answers 429.

With `prompt_cache = True` the usage it reports follows Anthropic's prompt caching: the request
is read as one prefix (tools, system blocks, then message blocks); at each block marked with
`cache_control` the prefix so far is a cache entry; the longest entry seen before is read from
the cache (`cache_read_input_tokens`), the rest up to the last breakpoint is written
(`cache_creation_input_tokens`) and what follows is plain input. Tokens are counted as 4
characters each. The CLI's `x-anthropic-billing-header` system block is request metadata, not
prompt, and is left out.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-ant-fake-test-key-0000"
#: A subscription login's token: the CLI reads the `anthropic-ratelimit-unified-*` headers (and
#: emits `RateLimitEvent`) only for a subscription, never for an API key.
OAUTH_TOKEN = "sk-ant-oat01-fake-test-token-0000"
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


@dataclass(frozen=True)
class Window:
    """The subscription limiter's state, sent as `anthropic-ratelimit-unified-*` headers."""

    status: str = "allowed"  # allowed, allowed_warning, rejected
    utilization: float = 0.0  # 0..1 of the five-hour window
    resets_at: float = 0.0  # unix seconds
    claim: str = "five_hour"

    def headers(self) -> dict[str, str]:
        reset = str(round(self.resets_at))
        return {
            "anthropic-ratelimit-unified-status": self.status,
            "anthropic-ratelimit-unified-reset": reset,
            "anthropic-ratelimit-unified-representative-claim": self.claim,
            "anthropic-ratelimit-unified-5h-utilization": f"{self.utilization:.4f}",
            "anthropic-ratelimit-unified-5h-reset": reset,
            "anthropic-ratelimit-unified-5h-status": self.status,
        }


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
        self.unified: Window | None = None
        self.prompt_cache = False
        self._cached: set[str] = set()
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

    def env(self, *, subscription: bool = False) -> dict[str, str]:
        """What the CLI needs to talk to this fake and nothing else (as a subscription login
        with `subscription`, so it reports the window as `RateLimitEvent`)."""
        credential = {"CLAUDE_CODE_OAUTH_TOKEN": OAUTH_TOKEN} if subscription \
            else {"ANTHROPIC_API_KEY": API_KEY}
        return {
            "ANTHROPIC_BASE_URL": self.url,
            **credential,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }

    # behaviour ---------------------------------------------------------------------------------

    def rate_limit(self, seconds: float, retry_after: float | None = None) -> None:
        """Answer every request with a 429 for the next `seconds`."""
        with self._lock:
            self._limited_until = time.monotonic() + seconds
            self._retry_after = retry_after if retry_after is not None else seconds

    def window(self, status: str = "allowed", utilization: float = 0.0,
               resets_in: float = 3600.0) -> Window:
        """Send the subscription limiter's headers from now on (see `Window`)."""
        with self._lock:
            self.unified = Window(status, utilization, time.time() + resets_in)
            return self.unified

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
            if self.unified is not None and self.unified.status == "rejected":
                self.rejected.append(call)
                return Status(429, retry_after=max(1.0, self.unified.resets_at - time.time()))
        if not call.is_main:
            return Text(self.side_reply)
        return self.script(call)

    def usage_for(self, body: dict[str, Any]) -> dict[str, int]:
        """Input token usage of a request (see `prompt_cache` in the module docstring)."""
        if not self.prompt_cache:
            return {"input_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        blocks: list[Any] = list(body.get("tools") or [])
        system = body.get("system")
        blocks += [b for b in (system if isinstance(system, list) else [system] if system else [])
                   if not str(b.get("text", "") if isinstance(b, dict) else b).startswith(
                       "x-anthropic-billing-header")]
        for message in body.get("messages") or []:
            content = message.get("content")
            for block in content if isinstance(content, list) else [content]:
                blocks.append({"role": message.get("role"), "block": block})
        digest, chars, read, last = hashlib.sha256(), 0, 0, 0
        marks: list[str] = []
        for block in blocks:
            inner = block.get("block", block) if isinstance(block, dict) else block
            marked = isinstance(inner, dict) and "cache_control" in inner
            if marked:
                inner = {k: v for k, v in inner.items() if k != "cache_control"}
                block = {**block, "block": inner} if "block" in block else inner
            text = json.dumps(block, sort_keys=True)
            digest.update(text.encode())
            chars += len(text)
            if marked:
                key = digest.copy().hexdigest()
                with self._lock:
                    if key in self._cached:
                        read = chars
                    marks.append(key)
                last = chars
        with self._lock:
            self._cached.update(marks)
        return {"input_tokens": (chars - last) // 4, "cache_read_input_tokens": read // 4,
                "cache_creation_input_tokens": (last - read) // 4}

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
        usage = self.api.usage_for(body)
        if body.get("stream"):
            self._stream(model, blocks, stop, usage)
        else:
            self._json(200, self._message(model, blocks, stop, usage))

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

    def _message(self, model: str, blocks: list[dict[str, Any]], stop: str,
                 usage: dict[str, int]) -> dict[str, Any]:
        return {"id": self.api.next_id("msg"), "type": "message", "role": "assistant",
                "model": model, "content": blocks, "stop_reason": stop, "stop_sequence": None,
                "usage": {**usage, "output_tokens": 10}}

    def _stream(self, model: str, blocks: list[dict[str, Any]], stop: str,
                usage: dict[str, int]) -> None:
        message = self._message(model, [], None, usage)  # type: ignore[arg-type]
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
        self._unified_headers()
        self.end_headers()
        self.wfile.write(data)

    def _unified_headers(self) -> None:
        window = self.api.unified
        for name, value in (window.headers() if window else {}).items():
            self.send_header(name, value)

    def _error(self, reply: Status) -> None:
        kind = "rate_limit_error" if reply.code == 429 else "api_error"
        data = json.dumps({"type": "error", "error": {"type": kind, "message": reply.message}}).encode()
        self.send_response(reply.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if reply.retry_after is not None:
            self.send_header("retry-after", str(max(1, round(reply.retry_after))))
        self.send_header("x-should-retry", "true" if reply.code == 429 or reply.code >= 500 else "false")
        self._unified_headers()
        self.end_headers()
        self.wfile.write(data)

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._unified_headers()
        self.end_headers()
        self.wfile.write(data)


def iter_tool_names(calls: list[Call]) -> Iterator[str]:
    """Names of the tools offered in the given requests (useful to check what the agent may use)."""
    for call in calls:
        for tool in call.body.get("tools") or []:
            yield str(tool.get("name"))
