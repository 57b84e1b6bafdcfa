"""A fake Discord: the REST API and the gateway websocket that real discord.py connects to.

It stands where Discord's servers would, speaking their wire protocol (JSON over HTTP with the
content type exactly `application/json`, gateway opcodes HELLO/IDENTIFY/READY/RESUME/dispatch),
and it holds the bot to Discord's rules as the API's OpenAPI description and developer docs
state them (tests/discord_api/ checks the routes and payloads against that description):

- an interaction's first callback must come within 3 s (else 404, 10062 Unknown interaction),
  and only one is accepted (400, 40060); the callback type must suit the interaction type;
  follow-ups use the interaction token for 15 minutes;
- message content is at most 2,000 characters, a `custom_id` at most 100, a message at most
  5 rows of 5 components (400, 50035 Invalid Form Body, with Discord's error tree);
- privileged intents the application was not granted close the gateway with 4014, a wrong
  token with 4004; every IDENTIFY is counted (Discord allows 1,000 a day);
- commands sync only to guilds the bot is in (403, 50001 Missing Access), and a slash command
  can only be used once synced;
- posts to channels that do not exist get 404, 10003 Unknown Channel; words the guild's
  AutoMod blocks get 400, 200000;
- message routes are rate limited per channel (5 per 5 s, Discord's documented bucket), with
  `X-RateLimit-*` headers on every answer and a 429 body with `retry_after` and `global`;
- RESUME replays the events the session missed and ends with RESUMED; an unknown session gets
  op 9 (Invalid Session).

It keeps the messages the bot posted and edited (with the pings each would have made, from
`allowed_mentions`), the interaction responses and follow-ups, and can inject what people do:
button clicks and slash commands (INTERACTION_CREATE), reactions (MESSAGE_REACTION_ADD) and
messages (MESSAGE_CREATE).

Point discord.py at it with `discord.http.Route.BASE = fake.api_base` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)` (the gateway
service does this from `KODA_DISCORD_API_BASE` / `KODA_DISCORD_GATEWAY_URL`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

_ids = itertools.count(1_300_000_000_000_000_000)

#: Discord's limits (developer docs: Message resource, Component reference, Interactions).
CONTENT_LIMIT = 2000
CUSTOM_ID_LIMIT = 100
LABEL_LIMIT = 80
RESPONSE_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60
#: Privileged gateway intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
PRIVILEGED_INTENTS = {1 << 1: "GUILD_MEMBERS", 1 << 8: "GUILD_PRESENCES",
                      1 << 15: "MESSAGE_CONTENT"}
#: Callback types Discord accepts per interaction type (2 command, 3 component, 5 modal submit).
CALLBACK_TYPES = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 5: {4, 5, 6, 7}}


def snowflake() -> str:
    return str(next(_ids))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int | str, name: str, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0, "flags": 0, "primary_guild": None}


def error(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return body


class Refused(Exception):
    """A request Discord would refuse: status and Discord's JSON error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status, self.body = status, body


def _form_error(path: list[str | int], code: str, message: str) -> Refused:
    tree: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        tree = {str(key): tree}
    return Refused(400, error(50035, "Invalid Form Body", tree))


def check_message(body: Any, prefix: tuple[str, ...] = ()) -> None:
    """Discord's limits on a message payload (create, edit, interaction response, follow-up)."""
    if not isinstance(body, dict):
        return
    content = body.get("content")
    if isinstance(content, str) and len(content) > CONTENT_LIMIT:
        raise _form_error([*prefix, "content"], "BASE_TYPE_MAX_LENGTH",
                          f"Must be {CONTENT_LIMIT} or fewer in length.")
    rows = body.get("components") or []
    if len(rows) > 5:
        raise _form_error([*prefix, "components"], "BASE_TYPE_MAX_LENGTH",
                          "Must be 5 or fewer in length.")
    for r, row in enumerate(rows):
        items = row.get("components") or []
        if len(items) > 5:
            raise _form_error([*prefix, "components", r, "components"], "BASE_TYPE_MAX_LENGTH",
                              "Must be 5 or fewer in length.")
        for i, item in enumerate(items):
            where: list[str | int] = [*prefix, "components", r, "components", i]
            if len(str(item.get("custom_id") or "")) > CUSTOM_ID_LIMIT:
                raise _form_error([*where, "custom_id"], "BASE_TYPE_MAX_LENGTH",
                                  f"Must be {CUSTOM_ID_LIMIT} or fewer in length.")
            if len(str(item.get("label") or "")) > LABEL_LIMIT:
                raise _form_error([*where, "label"], "BASE_TYPE_MAX_LENGTH",
                                  f"Must be {LABEL_LIMIT} or fewer in length.")


def pings(content: str, allowed: dict[str, Any] | None) -> dict[str, Any]:
    """Who a message pings, as Discord computes it from the content and `allowed_mentions`
    (absent = every mention in the content pings)."""
    parse = set(allowed.get("parse", [])) if allowed is not None else {"everyone", "users", "roles"}
    users = re.findall(r"<@!?(\d+)>", content)
    roles = re.findall(r"<@&(\d+)>", content)
    allowed_users = set(allowed.get("users", [])) if allowed else set()
    allowed_roles = set(allowed.get("roles", [])) if allowed else set()
    return {
        "mention_everyone": "everyone" in parse and ("@everyone" in content or "@here" in content),
        "mentions": [u for u in users if "users" in parse or u in allowed_users],
        "mention_roles": [r for r in roles if "roles" in parse or r in allowed_roles],
    }


@dataclass
class Call:
    """One REST request the bot made, and what the fake answered."""

    method: str
    path: str
    body: Any
    status: int = 0
    at: float = 0.0
    response: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Interaction:
    """An interaction sent to the bot, and how it was answered."""

    id: str
    token: str
    type: int
    created: float
    channel_id: str = ""
    message_id: str | None = None  # the message a component sits on
    callback_type: int | None = None
    original: dict[str, Any] | None = None  # the response message (types 4 and 5)
    edited: bool = False  # the component's message was edited through this interaction
    followups: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Session:
    """A gateway session: what was dispatched to it, for RESUME to replay."""

    id: str
    seq: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)
    socket: web.WebSocketResponse | None = None


@dataclass
class Bucket:
    remaining: int
    reset_at: float


#: (method, path template) of every route the fake serves; tests/discord_api checks each
#: against Discord's OpenAPI description.
ROUTES: list[tuple[str, str]] = [
    ("GET", "/users/@me"),
    ("GET", "/oauth2/applications/@me"),
    ("GET", "/gateway"),
    ("GET", "/gateway/bot"),
    ("PUT", "/applications/{application_id}/commands"),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands"),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback"),
    ("POST", "/webhooks/{webhook_id}/{webhook_token}"),
    ("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original"),
    ("GET", "/channels/{channel_id}"),
    ("POST", "/channels/{channel_id}/messages"),
    ("GET", "/channels/{channel_id}/messages/{message_id}"),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}"),
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/{user_id}"),
]


def _pattern(template: str) -> re.Pattern[str]:
    parts = [f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p)
             for p in template.strip("/").split("/")]
    return re.compile("^/" + "/".join(parts) + "$")


_COMPILED = [(method, template, _pattern(template)) for method, template in ROUTES]
#: Routes with Discord's per-channel message bucket.
_BUCKETED = {"/channels/{channel_id}/messages", "/channels/{channel_id}/messages/{message_id}"}


@dataclass
class FakeDiscord:
    """Start with `await start()`; every helper is safe to call from the test's event loop."""

    guild_id: str = field(default_factory=snowflake)
    app_id: str = field(default_factory=snowflake)
    channel_names: tuple[str, ...] = ("approvals", "reports", "alerts", "chat")
    channels: dict[str, str] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_times: dict[str, float] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[str, dict[str, Any]] = field(default_factory=dict)
    dm_channels: dict[str, str] = field(default_factory=dict)
    interactions: dict[str, Interaction] = field(default_factory=dict)
    #: READY sessions started (a RESUME is not counted).
    identified: int = 0
    #: Every IDENTIFY received, refused ones included: what Discord's daily limit counts.
    identifies: int = 0
    resumed: int = 0
    #: When set, REST calls with any other bot token get 401 and IDENTIFY is closed with 4004.
    valid_token: str | None = None
    #: Privileged intents enabled for the application in the Developer Portal.
    granted_intents: int = 1 << 15
    #: Guilds the bot was invited to (default: the one guild).
    member_of: set[str] = field(default_factory=set)
    #: The per-channel message bucket: (requests, per seconds).
    message_rate: tuple[int, float] = (5, 5.0)
    #: A close code sent right after each READY (a flapping gateway), dropping the session;
    #: 9 sends op 9 (Invalid Session, not resumable) instead of closing.
    close_after_ready: int | None = None
    #: A close code every IDENTIFY gets instead of READY (e.g. 4004 for a reset token).
    refuse_identify: int | None = None
    #: Seconds between an interaction and its deadline (Discord: 3).
    response_deadline: float = RESPONSE_DEADLINE
    #: Words the guild's AutoMod blocks (400, code 200000).
    blocked_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.bot = user(self.app_id, "koda", bot=True)
        for name in self.channel_names:
            self.channels[name] = snowflake()
        self.member_of = self.member_of or {self.guild_id}
        self.close_codes: list[int] = []
        self.refusals: list[Call] = []
        self._sessions: dict[str, Session] = {}
        self._buckets: dict[str, Bucket] = {}
        self._forced_429: list[float] = []
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.clock: Callable[[], float] = time.monotonic

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for session in self._sessions.values():
            if session.socket is not None:
                await session.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what the bot did -------------------------------------------------------------------

    def posted(self, channel: str) -> list[dict[str, Any]]:
        """Current state (after edits) of the messages in a channel (by name or id), oldest first."""
        cid = self.channels.get(channel, channel)
        return [m for m in self.messages.values() if m["channel_id"] == cid]

    def all_text(self) -> str:
        """Everything the bot ever sent, as one string: every request body and response."""
        return json.dumps([c.body for c in self.calls])

    def sent_payloads(self) -> list[dict[str, Any]]:
        """Every message payload the bot sent (posts, edits, interaction responses, follow-ups)."""
        out = []
        for call in self.calls:
            body = call.body if isinstance(call.body, dict) else {}
            if call.path.endswith("/callback"):
                body = body.get("data") or {}
            if "content" in body:
                out.append(body)
        return out

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"fake Discord: condition not met within {timeout}s")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: any(s.socket for s in self._sessions.values())
                            and self.identified, timeout)

    # --- what people do ---------------------------------------------------------------------

    def member(self, user_id: int | str, name: str = "someone") -> dict[str, Any]:
        return {"user": user(user_id, name), "roles": [], "joined_at": _now(), "deaf": False,
                "mute": False, "permissions": "2251799813685247", "flags": 0}

    def _interaction(self, itype: int, user_id: int | str, channel_id: str,
                     data: dict[str, Any], message: dict[str, Any] | None = None) -> dict[str, Any]:
        iid = snowflake()
        token = f"tok-{iid}"
        self.interactions[iid] = Interaction(iid, token, itype, self.clock(), channel_id,
                                             message["id"] if message else None)
        payload: dict[str, Any] = {
            "id": iid, "application_id": self.app_id, "type": itype, "token": token,
            "version": 1, "guild_id": self.guild_id,
            "channel": {"id": channel_id, "type": 0, "guild_id": self.guild_id},
            "channel_id": channel_id, "member": self.member(user_id), "data": data,
            "app_permissions": "2251799813685247", "locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": self.guild_id}, "context": 0,
            "attachment_size_limit": 8388608,
        }
        if message is not None:
            payload["message"] = message
        return payload

    async def click(self, message_id: str | int, custom_id: str, user_id: int | str,
                    as_seen: dict[str, Any] | None = None) -> str:
        """A button click on a posted message; returns the interaction id. `as_seen` is the
        message as the person's client still showed it (a click racing an edit)."""
        message = as_seen or self.messages[str(message_id)]
        shown = [c.get("custom_id") for row in message.get("components") or []
                 for c in row.get("components", [])]
        assert custom_id in shown, f"no button {custom_id!r} on that message ({shown})"
        payload = self._interaction(3, user_id, message["channel_id"],
                                    {"custom_id": custom_id, "component_type": 2}, message)
        self.interactions[payload["id"]].message_id = str(message_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def submit_form(self, opened_by: str, user_id: int | str,
                          values: dict[str, str]) -> str:
        """A person fills in and submits the form (modal) the bot answered interaction
        `opened_by` with: an interaction of type 5 whose components mirror the form's, each text
        input carrying its value; returns the new interaction id."""
        form = self.responses[opened_by]
        assert form.get("type") == 9, f"that interaction was not answered with a form: {form}"
        data = form["data"]

        def filled(item: dict[str, Any]) -> dict[str, Any]:
            return {"type": 4, "custom_id": item["custom_id"],
                    "value": values.get(item["custom_id"], item.get("value") or "")}
        submitted: list[dict[str, Any]] = []
        for row in data.get("components") or []:
            if row.get("type") == 18:  # a label around one input
                submitted.append({"type": 18, "component": filled(row["component"])})
            else:
                submitted.append({"type": 1, "components": [filled(c) for c in row["components"]]})
        origin = self.interactions[opened_by]
        message = self.messages.get(origin.message_id or "")
        payload = self._interaction(5, user_id, origin.channel_id,
                                    {"custom_id": data["custom_id"], "components": submitted},
                                    message)
        self.interactions[payload["id"]].message_id = origin.message_id
        await self.dispatch("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def slash(self, name: str, user_id: int | str, sub: str | None = None,
                    channel: str = "chat", **options: str) -> str:
        """A slash command, `/name sub option:value`; returns the interaction id. Only a
        command the bot synced can be used (Discord shows no other)."""
        command = next((c for c in self.commands if c["name"] == name), None)
        assert command is not None, f"/{name} was never synced: Discord would not offer it"
        opts = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        if sub is not None:
            opts = [{"name": sub, "type": 1, "options": opts}]
        data = {"id": command["id"], "name": name, "type": 1, "options": opts,
                "guild_id": self.guild_id}
        payload = self._interaction(2, user_id, self.channels.get(channel, channel), data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def react(self, message_id: str | int, emoji: str, user_id: int | str) -> None:
        message = self.messages[str(message_id)]
        await self.dispatch("MESSAGE_REACTION_ADD", {
            "user_id": str(user_id), "channel_id": message["channel_id"],
            "message_id": str(message_id), "guild_id": self.guild_id,
            "emoji": {"id": None, "name": emoji}, "member": self.member(user_id),
            "burst": False, "type": 0,
        })

    async def say(self, content: str, user_id: int | str, channel: str = "chat",
                  dm: bool = False) -> dict[str, Any]:
        """A person posts a message in a channel (or a DM to the bot)."""
        if dm:
            cid = self.dm_channels.setdefault(str(user_id), snowflake())
        else:
            cid = self.channels.get(channel, channel)
        message = self._message(cid, content, author=user(user_id, "person"))
        if not dm:
            message["guild_id"] = self.guild_id
            message["member"] = {k: v for k, v in self.member(user_id).items() if k != "user"}
        self.messages[message["id"]] = message
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def response(self, interaction_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The bot's first answer to an interaction (type 4 message, 5/6 deferred, 7 update)."""
        got: dict[str, Any] = await self.wait_for(lambda: self.responses.get(interaction_id),
                                                  timeout)
        return got

    async def outcome(self, interaction_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """What the person finally sees: the response message, or the latest follow-up, or (for
        an update) the clicked message. Returns a message payload with `content` and `flags`."""
        def seen() -> dict[str, Any] | None:
            inter = self.interactions[interaction_id]
            if inter.followups:
                return inter.followups[-1]
            if inter.callback_type in (4, 5) and inter.original and inter.original.get("content"):
                return inter.original
            if inter.callback_type == 7 and inter.message_id:
                return self.messages[inter.message_id]
            if inter.callback_type == 6 and inter.message_id and inter.edited:
                return self.messages[inter.message_id]
            return None
        got: dict[str, Any] = await self.wait_for(seen, timeout)
        return got

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event to every session; a session without a socket keeps it for RESUME."""
        for session in list(self._sessions.values()):
            session.seq += 1
            frame = json.dumps({"op": 0, "t": event, "s": session.seq, "d": data})
            session.events.append((session.seq, frame))
            if session.socket is not None and not session.socket.closed:
                await session.socket.send_str(frame)

    async def disconnect(self, code: int = 4000) -> None:
        """Close every gateway socket with `code`, keeping the sessions for RESUME."""
        for session in self._sessions.values():
            if session.socket is not None:
                ws, session.socket = session.socket, None
                await ws.close(code=code)

    def throttle(self, retry_after: float = 0.5, times: int = 1) -> None:
        """The next `times` message requests get a 429 (Discord also limits shared resources)."""
        self._forced_429 += [retry_after] * times

    # --- REST --------------------------------------------------------------------------------

    def _message(self, channel_id: str, content: str, author: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> dict[str, Any]:
        body = body or {}
        return {
            "id": snowflake(), "channel_id": channel_id, "author": author or self.bot,
            "content": content, "timestamp": _now(), "edited_timestamp": None, "tts": False,
            **self._pings(content, body), "attachments": [],
            "embeds": body.get("embeds") or [], "components": body.get("components") or [],
            "pinned": False, "type": 0, "flags": int(body.get("flags") or 0),
            "allowed_mentions": body.get("allowed_mentions"),
        }

    @staticmethod
    def _pings(content: str, body: dict[str, Any]) -> dict[str, Any]:
        found = pings(content, body.get("allowed_mentions"))
        return {"mention_everyone": found["mention_everyone"], "mention_roles": found["mention_roles"],
                "mentions": [user(u, "someone") for u in found["mentions"]]}

    def _edit(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("content", "embeds", "components"):
            if key in body:
                message[key] = body[key] or ([] if key != "content" else "")
        message["allowed_mentions"] = body.get("allowed_mentions")
        message.update(self._pings(message["content"], body))
        message["edited_timestamp"] = _now()

    def _known_channel(self, cid: str) -> bool:
        return (cid in self.channels.values() or cid in self.threads
                or cid in self.dm_channels.values())

    def _rate(self, key: str) -> tuple[dict[str, str], float | None]:
        """Take one request from the bucket; returns Discord's headers and, when over, the
        seconds to wait."""
        limit, per = self.message_rate
        now = time.time()
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = self._buckets[key] = Bucket(limit, now + per)
        retry = None
        if self._forced_429:
            retry = self._forced_429.pop(0)
        elif bucket.remaining <= 0:
            retry = bucket.reset_at - now
        else:
            bucket.remaining -= 1
        after = max(bucket.reset_at - now, 0.0)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(bucket.remaining),
                   "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
                   "X-RateLimit-Reset-After": f"{after:.3f}",
                   "X-RateLimit-Bucket": f"{abs(hash(key)) & 0xFFFFFFFF:08x}"}
        if retry is not None:
            headers.update({"Retry-After": str(math.ceil(retry)), "X-RateLimit-Scope": "user",
                            "X-RateLimit-Reset-After": f"{retry:.3f}"})
        return headers, retry

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = Call(request.method, path, body, at=time.monotonic())
        self.calls.append(call)
        status, payload, headers = self._answer(request, path, body)
        # Discord's API answers through Google's front end; discord.py treats a 429 without
        # `Via` as a Cloudflare ban rather than a rate limit.
        headers = {**headers, "Via": "1.1 google"}
        call.status, call.response, call.headers = status, payload, headers
        if status >= 400:
            self.refusals.append(call)
        if payload is None:
            return web.Response(status=status, headers=headers)
        # discord.py parses JSON only when the content type is exactly this (no charset).
        return web.Response(status=status, body=json.dumps(payload).encode(),
                            headers={**headers, "Content-Type": "application/json"})

    def _answer(self, request: web.Request, path: str, body: Any
                ) -> tuple[int, Any, dict[str, str]]:
        # Interaction and webhook routes are authorised by their token, not the bot's.
        webhook = path.startswith(("/interactions/", "/webhooks/"))
        if (not webhook and self.valid_token
                and request.headers.get("Authorization") != f"Bot {self.valid_token}"):
            return 401, error(0, "401: Unauthorized"), {}
        for method, template, pattern in _COMPILED:
            match = pattern.match(path)
            if match is None or method != request.method:
                continue
            params = match.groupdict()
            headers: dict[str, str] = {}
            if template in _BUCKETED:
                headers, retry = self._rate(f"{request.method} {params['channel_id']}")
                if retry is not None:
                    return 429, {"message": "You are being rate limited.", "code": 0,
                                 "retry_after": round(retry, 3), "global": False}, headers
            handler = getattr(self, "_" + re.sub(r"\W+", "_", f"{method} {template}").strip("_"))
            try:
                result = handler(params, body, request)
            except Refused as refused:
                return refused.status, refused.body, headers
            if result is None:
                return 204, None, headers
            return result[0], result[1], headers
        return 404, error(0, f"404: Not Found ({request.method} {path})"), {}

    # One method per route in ROUTES, named after it.

    def _GET_users_me(self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        return 200, {**self.bot, "mfa_enabled": False, "locale": "en-US"}

    def _GET_oauth2_applications_me(self, p: dict[str, str], body: Any, r: web.Request
                                    ) -> tuple[int, Any]:
        flags = (1 << 18) if self.granted_intents & (1 << 15) else 0  # GATEWAY_MESSAGE_CONTENT
        return 200, {"id": self.app_id, "name": "koda", "icon": None, "description": "",
                     "bot_public": False, "bot_require_code_grant": False,
                     "owner": user(1, "owner"), "verify_key": "00", "flags": flags,
                     "interactions_endpoint_url": None, "bot": self.bot, "type": None,
                     "flags_new": str(flags), "redirect_uris": [],
                     "role_connections_verification_url": None, "approximate_guild_count": 1,
                     "approximate_user_install_count": 0,
                     "approximate_user_authorization_count": 0, "explicit_content_filter": 0,
                     "team": None, "eligible_oauth2_scopes": ["bot", "applications.commands"]}

    def _gateway_info(self) -> dict[str, Any]:
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": max(0, 1000 - self.identifies),
            "reset_after": 86_400_000, "max_concurrency": 1}}

    def _GET_gateway(self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    def _GET_gateway_bot(self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        return 200, self._gateway_info()

    def _registered(self, body: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**c, "id": snowflake(), "application_id": self.app_id, "version": snowflake(),
                 "type": c.get("type", 1), "default_member_permissions": None,
                 "integration_types": c.get("integration_types") or [0],
                 "contexts": c.get("contexts"),
                 "description": c.get("description", ""), "dm_permission": True, "nsfw": False}
                for c in body]

    def _PUT_applications_application_id_commands(self, p: dict[str, str], body: Any,
                                                  r: web.Request) -> tuple[int, Any]:
        self.commands = self._registered(body)
        return 200, self.commands

    def _PUT_applications_application_id_guilds_guild_id_commands(
            self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        if p["guild_id"] not in self.member_of:
            raise Refused(403, error(50001, "Missing Access"))
        self.commands = [{**c, "guild_id": p["guild_id"]} for c in self._registered(body)]
        return 200, self.commands

    def _interaction_for_token(self, token: str) -> Interaction:
        inter = next((i for i in self.interactions.values() if i.token == token), None)
        if (inter is None or inter.callback_type is None
                or self.clock() - inter.created > TOKEN_LIFETIME):
            raise Refused(404, error(10015, "Unknown Webhook"))
        return inter

    def _POST_interactions_interaction_id_interaction_token_callback(
            self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any] | None:
        inter = self.interactions.get(p["interaction_id"])
        if (inter is None or inter.token != p["interaction_token"]
                or self.clock() - inter.created > self.response_deadline):
            raise Refused(404, error(10062, "Unknown interaction"))
        if inter.callback_type is not None:
            raise Refused(400, error(40060, "Interaction has already been acknowledged."))
        ctype = body.get("type")
        if ctype not in CALLBACK_TYPES.get(inter.type, set()):
            raise _form_error(["type"], "INTERACTION_CALLBACK_TYPE_INVALID",
                              f"Callback type {ctype} is not valid for interaction type {inter.type}")
        data = body.get("data") or {}
        check_message(data, ("data",))
        inter.callback_type = ctype
        self.responses[inter.id] = body
        self.response_times[inter.id] = time.perf_counter()
        target = self.messages.get(inter.message_id or "")
        resource: dict[str, Any] | None = None  # Discord returns one for types 4, 7 and 12
        if ctype in (4, 5):
            message = self._message(inter.channel_id, data.get("content") or "", body=data)
            message["interaction_id"] = inter.id
            inter.original = message
            if ctype == 4:
                resource = {"type": ctype, "message": message}
        elif ctype == 7 and target is not None:
            self._edit(target, data)
            resource = {"type": ctype, "message": target}
        flags = int(data.get("flags") or 0)
        if "with_response" not in r.query:
            return None
        answer: dict[str, Any] = {
            "id": inter.id, "type": inter.type, "channel_id": inter.channel_id,
            "guild_id": self.guild_id, "response_message_loading": ctype == 5,
            "response_message_ephemeral": bool(flags & 64)}
        if inter.original:
            answer["response_message_id"] = inter.original["id"]
        return 200, {"interaction": answer, **({"resource": resource} if resource else {})}

    def _POST_webhooks_webhook_id_webhook_token(self, p: dict[str, str], body: Any,
                                                r: web.Request) -> tuple[int, Any]:
        inter = self._interaction_for_token(p["webhook_token"])
        check_message(body)
        message = self._message(inter.channel_id, body.get("content") or "", body=body)
        inter.followups.append(message)
        return 200, message

    def _GET_webhooks_webhook_id_webhook_token_messages_original(
            self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        inter = self._interaction_for_token(p["webhook_token"])
        original = inter.original or self.messages.get(inter.message_id or "")
        if original is None:
            raise Refused(404, error(10008, "Unknown Message"))
        return 200, original

    def _PATCH_webhooks_webhook_id_webhook_token_messages_original(
            self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        inter = self._interaction_for_token(p["webhook_token"])
        check_message(body)
        # After a deferred update (6, 7) "@original" is the message the component is on.
        original = inter.original or self.messages.get(inter.message_id or "")
        if original is None:
            raise Refused(404, error(10008, "Unknown Message"))
        inter.edited = inter.original is None
        self._edit(original, body)
        return 200, original

    def _channel(self, cid: str) -> dict[str, Any]:
        if cid in self.threads:
            return self.threads[cid]
        if not self._known_channel(cid):
            raise Refused(404, error(10003, "Unknown Channel"))
        name = next((n for n, c in self.channels.items() if c == cid), "dm")
        return {"id": cid, "type": 0 if name != "dm" else 1, "guild_id": self.guild_id,
                "name": name, "position": 0, "permission_overwrites": []}

    def _GET_channels_channel_id(self, p: dict[str, str], body: Any, r: web.Request
                                 ) -> tuple[int, Any]:
        return 200, self._channel(p["channel_id"])

    def _POST_channels_channel_id_messages(self, p: dict[str, str], body: Any, r: web.Request
                                           ) -> tuple[int, Any]:
        self._channel(p["channel_id"])
        check_message(body)
        if not (body.get("content") or body.get("embeds") or body.get("components")):
            raise Refused(400, error(50006, "Cannot send an empty message"))
        if any(word in (body.get("content") or "") for word in self.blocked_words):
            raise Refused(400, error(200000, "Message was blocked by AutoMod"))
        message = self._message(p["channel_id"], body.get("content") or "", body=body)
        self.messages[message["id"]] = message
        return 200, message

    def _found(self, p: dict[str, str]) -> dict[str, Any]:
        self._channel(p["channel_id"])
        found = self.messages.get(p["message_id"])
        if found is None or found["channel_id"] != p["channel_id"]:
            raise Refused(404, error(10008, "Unknown Message"))
        return found

    def _GET_channels_channel_id_messages_message_id(self, p: dict[str, str], body: Any,
                                                     r: web.Request) -> tuple[int, Any]:
        return 200, self._found(p)

    def _PATCH_channels_channel_id_messages_message_id(self, p: dict[str, str], body: Any,
                                                       r: web.Request) -> tuple[int, Any]:
        found = self._found(p)
        check_message(body)
        self._edit(found, body)
        return 200, found

    def _DELETE_channels_channel_id_messages_message_id(self, p: dict[str, str], body: Any,
                                                        r: web.Request) -> None:
        self._found(p)
        del self.messages[p["message_id"]]

    def _POST_channels_channel_id_messages_message_id_threads(
            self, p: dict[str, str], body: Any, r: web.Request) -> tuple[int, Any]:
        self._found(p)
        tid = snowflake()
        thread = {"id": tid, "guild_id": self.guild_id, "parent_id": p["channel_id"],
                  "name": body.get("name", "thread"), "type": 11, "owner_id": self.app_id,
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                      "archive_timestamp": _now(), "locked": False},
                  "message_count": 0, "member_count": 1, "rate_limit_per_user": 0, "flags": 0,
                  "total_message_sent": 0}
        self.threads[tid] = thread
        return 201, thread

    def _DELETE_channels_channel_id_messages_message_id_reactions_emoji_name_user_id(
            self, p: dict[str, str], body: Any, r: web.Request) -> None:
        self._found(p)

    # --- gateway -----------------------------------------------------------------------------

    def _guild(self) -> dict[str, Any]:
        channels: list[dict[str, Any]] = [
            {"id": cid, "type": 0, "guild_id": self.guild_id, "name": name, "position": i,
             "permission_overwrites": [], "nsfw": False, "parent_id": None,
             "rate_limit_per_user": 0, "topic": None}
            for i, (name, cid) in enumerate(self.channels.items())]
        return {
            "id": self.guild_id, "name": "koda-test", "icon": None, "owner_id": "1",
            "roles": [{"id": self.guild_id, "name": "@everyone", "permissions": "2251799813685247",
                       "position": 0, "color": 0, "hoist": False, "managed": False,
                       "mentionable": False, "flags": 0}],
            "emojis": [], "stickers": [], "features": [], "channels": channels, "threads": [],
            "members": [{"user": self.bot, "roles": [], "joined_at": _now(), "deaf": False,
                         "mute": False, "flags": 0}],
            "member_count": 2, "voice_states": [], "presences": [], "large": False,
            "unavailable": False, "joined_at": _now(), "premium_tier": 0, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
            "system_channel_flags": 0, "preferred_locale": "en-US",
            "premium_progress_bar_enabled": False, "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    async def _close(self, ws: web.WebSocketResponse, code: int, reason: str) -> None:
        self.close_codes.append(code)
        await ws.close(code=code, message=reason.encode())

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        self.identifies += 1
        if self.refuse_identify is not None:
            await self._close(ws, self.refuse_identify, "refused")
            return
        if self.valid_token and d.get("token") not in (self.valid_token, f"Bot {self.valid_token}"):
            await self._close(ws, 4004, "Authentication failed.")
            return
        missing = [name for bit, name in PRIVILEGED_INTENTS.items()
                   if int(d.get("intents", 0)) & bit and not self.granted_intents & bit]
        if missing:
            await self._close(ws, 4014, "Disallowed intent(s).")
            return
        session = Session(snowflake(), socket=ws)
        self._sessions[session.id] = session
        self.identified += 1
        session.seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": session.seq, "d": {
            "v": 10, "user": self.bot, "session_id": session.id,
            "resume_gateway_url": self.gateway_url, "private_channels": [],
            "guilds": [{"id": g, "unavailable": True} for g in sorted(self.member_of)],
            "application": {"id": self.app_id, "flags": 0}}}))
        if self.close_after_ready is not None:
            del self._sessions[session.id]
            if self.close_after_ready == 9:
                await ws.send_str(json.dumps({"op": 9, "d": False}))
            else:
                await self._close(ws, self.close_after_ready, "flapping")
            return
        if self.guild_id in self.member_of:
            session.seq += 1
            await ws.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": session.seq,
                                          "d": self._guild()}))

    async def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if session is None:
            # Invalid Session, not resumable: the client must IDENTIFY again.
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        session.socket = ws
        self.resumed += 1
        for seq, frame in session.events:
            if seq > int(d.get("seq") or 0):
                await ws.send_str(frame)
        session.seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11}))
                elif op == 2:
                    await self._identify(ws, frame.get("d") or {})
                elif op == 6:
                    await self._resume(ws, frame.get("d") or {})
        finally:
            for session in self._sessions.values():
                if session.socket is ws:
                    session.socket = None
        return ws
