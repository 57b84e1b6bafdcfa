"""A fake Discord: the REST API and the gateway websocket that real discord.py connects to.

It stands where Discord's servers would, speaking their wire protocol (JSON over HTTP with the
content type exactly `application/json`, gateway opcodes HELLO/IDENTIFY/READY/dispatch). It
keeps the messages the bot posted and edited, the interaction responses it sent, and can inject
what people do: button clicks and slash commands (INTERACTION_CREATE), reactions
(MESSAGE_REACTION_ADD) and messages (MESSAGE_CREATE).

Point discord.py at it with `discord.http.Route.BASE = fake.api_base` and
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)` (the gateway
service does this from `KODA_DISCORD_API_BASE` / `KODA_DISCORD_GATEWAY_URL`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

_ids = itertools.count(1_300_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_ids))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: int | str, name: str, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot, "public_flags": 0}


@dataclass
class Call:
    """One REST request the bot made."""

    method: str
    path: str
    body: Any


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
    identified: int = 0
    #: When set, REST calls with any other bot token get 401 (as Discord does for a bad token).
    valid_token: str | None = None

    def __post_init__(self) -> None:
        self.bot = user(self.app_id, "koda", bot=True)
        for name in self.channel_names:
            self.channels[name] = snowflake()
        self._sockets: list[web.WebSocketResponse] = []
        self._clicked: dict[str, str] = {}  # interaction id -> message id
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

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
        for ws in list(self._sockets):
            await ws.close()
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

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"fake Discord: condition not met within {timeout}s")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self._sockets and self.identified, timeout)

    # --- what people do ---------------------------------------------------------------------

    def member(self, user_id: int | str, name: str = "someone") -> dict[str, Any]:
        return {"user": user(user_id, name), "roles": [], "joined_at": _now(), "deaf": False,
                "mute": False, "permissions": "2251799813685247", "flags": 0}

    def _interaction(self, itype: int, user_id: int | str, channel_id: str,
                     data: dict[str, Any], message: dict[str, Any] | None = None) -> dict[str, Any]:
        iid = snowflake()
        payload: dict[str, Any] = {
            "id": iid, "application_id": self.app_id, "type": itype, "token": f"tok-{iid}",
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
        payload = self._interaction(3, user_id, message["channel_id"],
                                    {"custom_id": custom_id, "component_type": 2}, message)
        self._clicked[str(payload["id"])] = str(message_id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return str(payload["id"])

    async def slash(self, name: str, user_id: int | str, sub: str | None = None,
                    channel: str = "chat", **options: str) -> str:
        """A slash command, `/name sub option:value`; returns the interaction id."""
        opts = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
        if sub is not None:
            opts = [{"name": sub, "type": 1, "options": opts}]
        command = next((c for c in self.commands if c["name"] == name), None)
        data = {"id": command["id"] if command else snowflake(), "name": name, "type": 1,
                "options": opts, "guild_id": self.guild_id}
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
        """The bot's answer to an interaction (type 4 message, 7 update, ...)."""
        got: dict[str, Any] = await self.wait_for(lambda: self.responses.get(interaction_id),
                                                  timeout)
        return got

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self._seq, "d": data})
        for ws in list(self._sockets):
            await ws.send_str(frame)

    # --- REST --------------------------------------------------------------------------------

    def _message(self, channel_id: str, content: str, author: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> dict[str, Any]:
        body = body or {}
        return {
            "id": snowflake(), "channel_id": channel_id, "author": author or self.bot,
            "content": content, "timestamp": _now(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": body.get("embeds") or [], "components": body.get("components") or [],
            "pinned": False, "type": 0, "flags": 0,
        }

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self.calls.append(Call(request.method, path, body))
        if self.valid_token and request.headers.get("Authorization") != f"Bot {self.valid_token}":
            return web.Response(status=401, body=b'{"message": "401: Unauthorized", "code": 0}',
                                headers={"Content-Type": "application/json"})
        parts = path.strip("/").split("/")
        result = self._route(request.method, parts, body)
        if result is None:
            return web.Response(status=204)
        status, payload = result
        # discord.py parses JSON only when the content type is exactly this (no charset).
        return web.Response(status=status, body=json.dumps(payload).encode(),
                            headers={"Content-Type": "application/json"})

    def _route(self, method: str, parts: list[str], body: Any) -> tuple[int, Any] | None:
        if parts == ["users", "@me"]:
            return 200, self.bot
        if parts == ["oauth2", "applications", "@me"]:
            return 200, {"id": self.app_id, "name": "koda", "icon": None, "description": "",
                         "bot_public": False, "bot_require_code_grant": False,
                         "owner": user(1, "owner"), "verify_key": "00", "flags": 0,
                         "interactions_endpoint_url": None, "bot": self.bot}
        if parts == ["gateway", "bot"] or parts == ["gateway"]:
            return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}
        if parts[:1] == ["applications"] and parts[-1] == "commands" and method == "PUT":
            self.commands = [{**c, "id": snowflake(), "application_id": self.app_id,
                              "version": "1", "type": c.get("type", 1)} for c in body]
            return 200, self.commands
        if parts[:1] == ["interactions"] and parts[-1] == "callback":
            self.responses[parts[1]] = body
            self.response_times[parts[1]] = time.perf_counter()
            target = self.messages.get(self._clicked.get(parts[1], ""))
            if body.get("type") == 7 and target is not None:  # UPDATE_MESSAGE edits the message
                for key in ("content", "embeds", "components"):
                    if key in body.get("data", {}):
                        target[key] = body["data"][key] or ([] if key != "content" else "")
                target["edited_timestamp"] = _now()
            return 200, {"interaction": {"id": parts[1], "type": body.get("type")}}
        if parts[:1] == ["channels"] and len(parts) == 3 and parts[2] == "messages" and method == "POST":
            message = self._message(parts[1], body.get("content") or "", body=body)
            self.messages[message["id"]] = message
            return 200, message
        if parts[:1] == ["channels"] and len(parts) == 4 and parts[2] == "messages":
            found = self.messages.get(parts[3])
            if found is None:
                return 404, {"message": "Unknown Message", "code": 10008}
            if method == "DELETE":
                del self.messages[parts[3]]
                return None
            if method == "PATCH":
                for key in ("content", "embeds", "components"):
                    if key in body:
                        found[key] = body[key] or ([] if key != "content" else "")
                found["edited_timestamp"] = _now()
            return 200, found
        if parts[:1] == ["channels"] and parts[-1] == "threads" and method == "POST":
            tid = snowflake()
            thread = {"id": tid, "guild_id": self.guild_id, "parent_id": parts[1],
                      "name": body.get("name", "thread"), "type": 11, "owner_id": self.app_id,
                      "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                          "archive_timestamp": _now(), "locked": False},
                      "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
                      "flags": 0}
            self.threads[tid] = thread
            return 201, thread
        if "reactions" in parts:
            return None
        if parts[:1] == ["channels"] and len(parts) == 2:
            cid = parts[1]
            return 200, {"id": cid, "type": 0, "guild_id": self.guild_id, "name": "channel",
                         "position": 0, "permission_overwrites": []}
        return 404, {"message": f"fake Discord has no route {method} /{'/'.join(parts)}",
                     "code": 0}

    # --- gateway -----------------------------------------------------------------------------

    def _guild(self) -> dict[str, Any]:
        channels: list[dict[str, Any]] = [{"id": cid, "type": 0, "guild_id": self.guild_id, "name": name,
                     "position": i, "permission_overwrites": [], "nsfw": False,
                     "parent_id": None, "rate_limit_per_user": 0, "topic": None}
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
                elif op in (2, 6):  # IDENTIFY, or RESUME answered with a fresh session
                    self._sockets.append(ws)
                    self._seq += 1
                    await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": self._seq, "d": {
                        "v": 10, "user": self.bot, "session_id": snowflake(),
                        "resume_gateway_url": self.gateway_url, "private_channels": [],
                        "guilds": [{"id": self.guild_id, "unavailable": True}],
                        "application": {"id": self.app_id, "flags": 0}}}))
                    await self.dispatch("GUILD_CREATE", self._guild())
                    self.identified += 1
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws
