"""The Discord bot: approvals with buttons and reactions, reports, alerts, slash commands, chat.

Only imported when `KODA_DISCORD_TOKEN` is set (discord.py pulls in aiohttp). Every decision is
checked against the approver allowlist and goes through the approval desk, so it is taken once
whether it comes from a button, a reaction, or the console. Everything posted is redacted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord import app_commands

from koda.shared.messages import ApprovalRecord, Event

from . import controls, reports, status
from .commands import install_commands
from .context import GatewayContext
from .views import DecisionButton, decision_view

log = logging.getLogger(__name__)
APPROVE, REJECT = "✅", "❌"
#: Events a person must see in the alerts channel (besides every `incident.*`).
ALERTS = ("alert", "scrape.needs_human")


def point_at(api_base: str | None, gateway_url: str | None) -> None:
    """Send discord.py to another Discord (a proxy, or the fake one in tests)."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class KodaBot(discord.Client):
    """A discord.py client wired to the gateway's context."""

    def __init__(self, ctx: GatewayContext) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.dm_messages = True
        intents.message_content = True
        intents.guild_reactions = True
        intents.dm_reactions = True
        super().__init__(intents=intents)
        self.ctx = ctx
        self.settings = ctx.settings
        self.approvers = ctx.settings.approver_ids()
        self.tree = app_commands.CommandTree(self)
        self._post_lock = asyncio.Lock()
        self.ready = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        self.add_dynamic_items(DecisionButton)
        install_commands(self.tree, self)
        if self.settings.discord_guild:
            guild = discord.Object(self.settings.discord_guild)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        # Logged in: REST works from here, so reports and approvals may flow while the gateway
        # connects (discord.py's on_ready waits a further 2 s for guild data we do not need).
        self.ready.set()

    async def on_ready(self) -> None:
        log.info("discord bot connected", extra={"user": str(self.user)})
        await self.post_pending()

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        # After close() discord.py still dispatches e.g. 'disconnect' from its connect loop, with
        # no event loop left to run the handler: the coroutine would be dropped never awaited.
        if self.is_closed():
            return
        super().dispatch(event, *args, **kwargs)

    def may_decide(self, user_id: int) -> bool:
        return user_id in self.approvers

    def may_command(self, user_id: int) -> bool:
        return user_id in self.approvers or user_id == self.settings.discord_owner

    # --- approvals ----------------------------------------------------------------------------

    async def post_pending(self) -> int:
        """Post every pending approval that has no message yet (after a restart too)."""
        channel_id = self.settings.discord_approvals_channel
        if channel_id is None:
            return 0
        posted = 0
        async with self._post_lock:
            for record in await self.ctx.desk.refresh():
                if record.discord_message_id is not None:
                    continue
                message = await self.get_partial_messageable(channel_id).send(
                    self.approval_text(record), view=decision_view(record.id))
                if not await self.ctx.desk.store.note_message(record.id, channel_id, message.id):
                    await message.delete()  # another gateway posted it first
                posted += 1
        return posted

    def approval_text(self, record: ApprovalRecord) -> str:
        draft = status.draft_file(self.ctx.home, record.artifact)
        return reports.approval_text(record, self.ctx.redact,
                                     status.preview(draft) if draft else None)

    async def show_outcome(self, record: ApprovalRecord) -> None:
        """Edit an approval's message to its current state (buttons gone once decided)."""
        if record.discord_channel_id is None or record.discord_message_id is None:
            return
        message = self.get_partial_messageable(record.discord_channel_id).get_partial_message(
            record.discord_message_id)
        view = decision_view(record.id) if record.status == "pending" else None
        try:
            await message.edit(content=self.approval_text(record), view=view)
        except discord.NotFound:
            log.warning("approval message is gone", extra={"approval_id": record.id})

    async def remind(self, record: ApprovalRecord) -> None:
        channel_id = record.discord_channel_id or self.settings.discord_approvals_channel
        if channel_id is None:
            return
        reference = (discord.MessageReference(message_id=record.discord_message_id,
                                              channel_id=channel_id, fail_if_not_exists=False)
                     if record.discord_message_id else None)
        await self.get_partial_messageable(channel_id).send(
            reports.reminder_text(record, self.ctx.redact), reference=reference)  # type: ignore[arg-type]

    async def on_decision_click(self, interaction: discord.Interaction[Any], approve: bool,
                                approval_id: str) -> None:
        user_id = interaction.user.id
        if not self.may_decide(user_id):
            log.warning("approval click from a user not on the allowlist",
                        extra={"user": user_id, "approval_id": approval_id})
            await interaction.response.send_message(
                "You are not on Koda's approver list; nothing was changed.", ephemeral=True)
            return
        try:
            decision = await self.ctx.desk.decide(approval_id, approve, str(user_id))
        except Exception:
            log.exception("could not record a decision", extra={"approval_id": approval_id})
            await interaction.response.send_message(
                "Koda could not record that decision (bus unavailable); nothing changed, please "
                "try again.", ephemeral=True)
            return
        record = decision.record
        if record is None:
            await interaction.response.send_message("No such approval.", ephemeral=True)
            return
        content = self.approval_text(record)
        if decision.changed:
            await interaction.response.edit_message(content=content, view=None)
        else:
            await interaction.response.send_message(
                self.ctx.redact(f"Nothing changed: {decision.reason}."), ephemeral=True)
            await self.show_outcome(record)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in (APPROVE, REJECT) or (self.user and payload.user_id == self.user.id):
            return
        record = await self.ctx.desk.store.find_by_message(payload.message_id)
        if record is None:
            return
        if not self.may_decide(payload.user_id):
            log.warning("approval reaction from a user not on the allowlist",
                        extra={"user": payload.user_id, "approval_id": record.id})
            # A reaction cannot be answered privately; taking it away shows it did not count.
            message = self.get_partial_messageable(payload.channel_id).get_partial_message(
                payload.message_id)
            try:
                await message.remove_reaction(payload.emoji, discord.Object(payload.user_id))
            except discord.HTTPException:
                pass  # no Manage Messages permission: the reaction stays, still without effect
            return
        decision = await self.ctx.desk.decide(record.id, emoji == APPROVE, str(payload.user_id))
        if decision.record is not None:
            await self.show_outcome(decision.record)

    # --- chat ----------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        owner = self.settings.discord_owner
        if message.author.bot or owner is None or message.author.id != owner:
            return
        in_dm = message.guild is None
        if not in_dm and message.channel.id != self.settings.discord_chat_channel:
            return
        if not message.content.strip():
            return
        target: Any = message.channel
        if not in_dm:
            target = await message.create_thread(name=reports.clip(message.content, 90) or "chat")
        request = await controls.trigger(
            self.ctx.bus, self.ctx.home, self.settings.chat_task, f"discord:{owner}",
            prompt=self.ctx.redact(message.content), reply_to=f"discord:{target.id}",
            trigger="chat")
        await target.send(f"On it (run `{request.run_id}`).")

    # --- reports -------------------------------------------------------------------------------

    async def send(self, channel_id: int | None, text: str) -> None:
        if channel_id is not None and text:
            await self.get_partial_messageable(channel_id).send(self.ctx.redact(text))

    async def deliver(self, event: Event) -> None:
        """Turn one audit event into what people see on Discord."""
        kind = event.event
        data = event.data
        store = self.ctx.desk.store
        if kind == "approval.requested":
            await self.post_pending()
        elif kind in ("approval.decided", "approval.reminder"):
            got = await store.get(str(data.get("approval_id", "")))
            if got is not None:
                record = got[0]
                if kind == "approval.decided":
                    await self.show_outcome(record)
                else:
                    await self.remind(record)
        elif kind in ("run.finished", "run.failed"):
            reply_to = str(data.get("reply_to") or "")
            if reply_to.startswith("discord:") and reply_to[8:].isdigit():
                await self.send(int(reply_to[8:]), reports.chat_answer(event, self.ctx.redact))
            else:
                await self.send(self.settings.discord_reports_channel,
                                reports.run_report(event, self.ctx.redact))
        elif kind in ALERTS or kind.startswith("incident."):
            await self.send(self.settings.discord_alerts_channel,
                            reports.alert_text(event, self.ctx.redact))
        elif kind == "agent.notify":
            await self.send(self.settings.discord_reports_channel,
                            reports.notify_text(event, self.ctx.redact))
