"""docs/discord.md tells an operator to grant exactly what the bot asks Discord for."""

from __future__ import annotations

import re
from pathlib import Path

import discord

from koda.services.gateway.discord_bot import PERMISSIONS, SCOPES, requested_intents

DOC = Path(__file__).resolve().parents[2] / "docs" / "discord.md"
#: The Developer Portal's names -> discord.py's.
PORTAL_PERMISSIONS = {
    "View Channels": "view_channel", "Send Messages": "send_messages",
    "Send Messages in Threads": "send_messages_in_threads",
    "Create Public Threads": "create_public_threads",
    "Read Message History": "read_message_history", "Add Reactions": "add_reactions",
    "Manage Messages": "manage_messages", "Embed Links": "embed_links",
}
PORTAL_INTENTS = {
    "Guilds": "guilds", "Guild Messages": "guild_messages", "Direct Messages": "dm_messages",
    "Guild Message Reactions": "guild_reactions", "Direct Message Reactions": "dm_reactions",
    "Message Content": "message_content", "Server Members": "members", "Presence": "presences",
}
PRIVILEGED = {"message_content", "members", "presences"}


def test_the_permissions_table_and_invite_link_match_what_the_bot_uses() -> None:
    text = DOC.read_text()
    table = text[text.index("| Permission |"):]
    rows = re.findall(r"^\| ([A-Z][^|]+?) \|", table.split("\n\n")[0], re.M)[1:]  # no header
    named = discord.Permissions(**{PORTAL_PERMISSIONS[r]: True for r in rows})
    assert named == PERMISSIONS, f"doc grants {named.value}, the bot uses {PERMISSIONS.value}"
    link = re.search(r"scope=([\w.+]+)&permissions=(\d+)", text)
    assert link is not None
    assert tuple(link.group(1).split("+")) == SCOPES
    assert int(link.group(2)) == PERMISSIONS.value
    for scope in SCOPES:
        assert f"**{scope}**" in text


def test_the_intents_to_enable_are_the_privileged_ones_the_bot_requests() -> None:
    text = DOC.read_text()
    asked = {name for name, on in requested_intents() if on}
    turn_on = text[text.index("**Privileged Gateway Intents**"):text.index("and leave")]
    enabled = {PORTAL_INTENTS[m] for m in re.findall(r"\*\*(\w[\w ]*?) Intent\*\*", turn_on)}
    assert enabled == asked & PRIVILEGED
    listed = text[text.index("The gateway intents Koda asks for"):]
    listed = listed[:listed.index("\n\n")]
    named = {flag for portal, flag in PORTAL_INTENTS.items() if re.search(rf"\b{portal}\b", listed)}
    assert named == asked


def test_every_discord_setting_is_documented() -> None:
    from koda.shared.settings import KodaSettings

    text = DOC.read_text()
    fields = [f for f in KodaSettings.model_fields if f.startswith("discord_")
              and f not in ("discord_api_base", "discord_gateway_url")]
    missing = [f"KODA_{f.upper()}" for f in fields if f"KODA_{f.upper()}" not in text]
    assert not missing
