"""The Discord bot: approvals with buttons and reactions, reports, alerts, slash commands, chat.

Only imported when `KODA_DISCORD_TOKEN` is set (discord.py pulls in aiohttp). Every decision is
checked against the approver allowlist and goes through the approval desk, so it is taken once
whether it comes from a button, a reaction, or the console. Everything posted is redacted, and
sent with no mentions allowed: agent and scraped text may say `@everyone` or name a role, and
must not ping anyone. Discord wants the first answer to a click within 3 s: the bot answers
(defers) before it touches the bus, then tells the person what really happened.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import discord
import yarl
from discord import app_commands

from koda.shared import controls
from koda.shared.events import ApprovalEvent, RunEnded
from koda.shared.messages import ApprovalRecord, Event

from . import reports, status
from .commands import install_commands
from .context import GatewayContext
from .discord_link import LinkState
from .views import DecisionButton, EditForm, decision_view, short_ref

log = logging.getLogger(__name__)
APPROVE, REJECT = "✅", "❌"
#: Events a person must see in the alerts channel (besides every `incident.*`).
ALERTS = ("alert", "scrape.needs_human")
#: How long a click's decision may take on a slow bus, and how long the bot keeps trying when
#: the bus is down (an interaction token takes follow-ups for 15 minutes).
DECIDE_TIMEOUT = 30.0
FOLLOW_UP_WINDOW = 12 * 60.0


def describe(exc: BaseException) -> str:
    """One line for an HTTP refusal: status, Discord's code and message."""
    if isinstance(exc, discord.HTTPException):
        return f"{exc.status} {exc.text or exc.response.reason} (code {exc.code})"
    return f"{type(exc).__name__}: {exc}"


def point_at(api_base: str | None, gateway_url: str | None) -> None:
    """Send discord.py to another Discord (a proxy, or the fake one in tests)."""
    if api_base:
        discord.http.Route.BASE = api_base.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class KodaBot(discord.Client):
    """A discord.py client wired to the gateway's context."""

    def __init__(self, ctx: GatewayContext, link: LinkState | None = None) -> None:
        # Agent and scraped text must never ping: no mention is allowed in anything sent.
        super().__init__(intents=requested_intents(),
                         allowed_mentions=discord.AllowedMentions.none())
        self.ctx = ctx
        self.link = link or LinkState()
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
            await self.sync_commands(self.settings.discord_guild)
        # Logged in: REST works from here, so reports and approvals may flow while the gateway
        # connects (discord.py's on_ready waits a further 2 s for guild data we do not need).
        self.ready.set()

    async def sync_commands(self, guild_id: int) -> None:
        """Register the slash commands in the guild. A refusal (wrong guild, bot not invited
        with `applications.commands`) costs the commands only: approvals and reports go on."""
        guild = discord.Object(guild_id)
        self.tree.copy_global_to(guild=guild)
        try:
            await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            hint = ("the bot is not in that guild: check KODA_DISCORD_GUILD, and invite the bot "
                    "with the bot and applications.commands scopes (docs/discord.md)"
                    if exc.code == 50001 or exc.status == 403 else "Discord refused the commands")
            self.link.sync_error = (f"slash commands not registered in guild {guild_id}: "
                                    f"{describe(exc)}; {hint}")
            log.error("slash command sync failed; approvals and reports still work",
                      extra={"guild": guild_id, "error": self.link.sync_error})
            self.link.report("commands", self.link.sync_error)
        else:
            self.link.sync_error = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Replaces discord.py's fixed 5 s wait: every IDENTIFY, from any reconnect path, waits
        # its turn so a failing gateway never nears Discord's 1,000 a day.
        await self.link.budget.acquire()
        self.link.identifies += 1

    async def on_connect(self) -> None:
        self.link.budget.connected()

    async def on_resumed(self) -> None:
        self.link.budget.connected()

    async def on_disconnect(self) -> None:
        self.link.budget.disconnected()

    async def on_ready(self) -> None:
        log.info("discord bot connected", extra={"user": str(self.user)})
        self.link.connected()
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
                # One refused post (a bad payload, a vanished channel) must not hold back the
                # approvals after it; it is retried on the next sweep.
                try:
                    message = await self.get_partial_messageable(channel_id).send(
                        self.approval_text(record), view=decision_view(record.id))
                except discord.HTTPException as exc:
                    self.link.post_failed(f"approval {record.id} not posted to channel "
                                          f"{channel_id}: {describe(exc)}")
                    continue
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

    async def resolve(self, ref: str) -> str | None:
        """The approval id a button carries: itself, or (for a long one) by its hash."""
        if not ref.startswith("~"):
            return ref
        return next((r.id for r in await self.ctx.desk.store.all() if short_ref(r.id) == ref),
                    None)

    async def on_decision_click(self, interaction: discord.Interaction[Any], approve: bool,
                                ref: str) -> None:
        user_id = interaction.user.id
        if not self.may_decide(user_id):
            log.warning("approval click from a user not on the allowlist",
                        extra={"user": user_id, "approval_ref": ref})
            await interaction.response.send_message(
                "You are not on Koda's approver list; nothing was changed.", ephemeral=True)
            return
        # Answer Discord now (the deadline is 3 s); the decision takes bus round trips.
        await interaction.response.defer()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + FOLLOW_UP_WINDOW
        delay, told_waiting = 1.0, False
        while True:
            try:
                approval_id = await asyncio.wait_for(self.resolve(ref), DECIDE_TIMEOUT)
                decision = (await asyncio.wait_for(
                    self.ctx.desk.decide(approval_id, approve, str(user_id)), DECIDE_TIMEOUT)
                    if approval_id else None)
                break
            except Exception as exc:
                log.warning("could not record a decision yet",
                            extra={"approval_ref": ref, "error": describe(exc)})
                if self.is_closed():
                    return  # the gateway is stopping; the approval stays pending
                if loop.time() + delay > give_up:
                    await self._tell(interaction, "Koda's message bus did not answer for "
                                     f"{FOLLOW_UP_WINDOW / 60:.0f} minutes, so your decision was "
                                     "not recorded. Nothing changed; please click again later.")
                    return
                if not told_waiting:
                    told_waiting = True
                    await self._tell(interaction, "Koda's message bus is not answering. Your "
                                     "decision will be recorded as soon as it is back, and you "
                                     "will be told here.")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        record = decision.record if decision else None
        if decision is None or record is None:
            await self._tell(interaction, "No such approval.")
            return
        mine = record.decided_by == str(user_id) and record.status in ("approved", "rejected")
        if mine and record.status == "approved" and not record.dispatched:
            # Recorded, but the action's publish was cut short (a retry after a bus failure
            # lands here): send it now; it runs once under its idempotency key.
            try:
                await self.ctx.desk.store.dispatch_pending()
            except Exception as exc:
                log.error("approved action not sent yet", extra={"approval_id": record.id,
                                                                  "error": describe(exc)})
        content = self.approval_text(record)
        if decision.changed or (mine and told_waiting):
            try:
                await interaction.edit_original_response(content=content, view=None)
            except discord.HTTPException:
                await self.show_outcome(record)  # the token expired: edit the message itself
            if told_waiting:
                await self._tell(interaction, f"Done: {record.status}.")
        else:
            await self._tell(interaction, f"Nothing changed: {decision.reason}.")
            await self.show_outcome(record)

    async def on_edit_click(self, interaction: discord.Interaction[Any], ref: str) -> None:
        """Edit: an approver gets the form with the arguments; anyone else is told no."""
        if not self.may_decide(interaction.user.id):
            await interaction.response.send_message(
                "You are not on Koda's approver list; nothing was changed.", ephemeral=True)
            return
        approval_id = await self.resolve(ref)
        got = await self.ctx.desk.store.get(approval_id) if approval_id else None
        if got is None or got[0].status != "pending":
            state = got[0].status if got else "gone"
            await interaction.response.send_message(f"Nothing to edit: it is {state}.",
                                                    ephemeral=True)
            return
        await interaction.response.send_modal(EditForm(ref, json.dumps(got[0].args, indent=1)))

    async def on_edit_submit(self, interaction: discord.Interaction[Any], ref: str,
                             text: str) -> None:
        """The form came back: approve with the person's arguments (audited in the record)."""
        user_id = interaction.user.id
        if not self.may_decide(user_id):
            await interaction.response.send_message(
                "You are not on Koda's approver list; nothing was changed.", ephemeral=True)
            return
        try:
            args = json.loads(text)
        except ValueError as exc:
            args, problem = None, f"that is not JSON ({exc}); nothing was changed"
        else:
            problem = "" if isinstance(args, dict) else "give a JSON object; nothing was changed"
        if problem or not isinstance(args, dict):
            await interaction.response.send_message(problem, ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True)
        approval_id = await self.resolve(ref)
        decision = await self.ctx.desk.decide(approval_id, True, str(user_id), args=args) \
            if approval_id else None
        if decision is None or decision.record is None:
            await self._tell(interaction, "No such approval.")
            return
        await self.show_outcome(decision.record)
        await self._tell(interaction, "Approved with your edit." if decision.changed
                         else f"Nothing changed: {decision.reason}.")

    async def _tell(self, interaction: discord.Interaction[Any], text: str) -> None:
        """A private follow-up to the person who clicked."""
        try:
            await interaction.followup.send(reports.safe(text, self.ctx.redact), ephemeral=True)
        except Exception as exc:  # Discord refused, or the bot is closing
            log.warning("could not tell the person", extra={"error": describe(exc)})

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
        """Post redacted text. A refusal that a retry cannot fix (an unknown channel, missing
        access, an invalid payload) is logged and reported, not retried; anything else raises
        so the event is delivered again later."""
        if channel_id is None or not text:
            return
        try:
            await self.get_partial_messageable(channel_id).send(
                reports.safe(text, self.ctx.redact))
        except discord.HTTPException as exc:
            if 400 <= exc.status < 500 and exc.status != 429:
                self.link.post_failed(f"message to channel {channel_id} refused: {describe(exc)}")
                return
            raise

    async def deliver(self, event: Event) -> None:
        """Turn one audit event into what people see on Discord."""
        kind = event.event
        store = self.ctx.desk.store
        if kind == "approval.requested":
            await self.post_pending()
        elif kind in ("approval.decided", "approval.reminder"):
            got = await store.get(ApprovalEvent.of(event).approval_id)
            if got is not None:
                record = got[0]
                if kind == "approval.decided":
                    await self.show_outcome(record)
                else:
                    await self.remind(record)
        elif kind in RunEnded.kinds:
            reply_to = RunEnded.of(event).reply_to or ""
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


def requested_intents() -> discord.Intents:
    """The gateway intents the bot asks for (docs/discord.md lists them; a test compares).
    Message Content is privileged: it must be enabled in the Developer Portal."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    intents.guild_reactions = True
    intents.dm_reactions = True
    return intents


#: Channel permissions the bot uses, by the Developer Portal's names (docs/discord.md lists
#: them; a test compares): post and edit approvals and reports, read the chat channel, make
#: chat threads and post in them, read reactions and remove a stranger's.
PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, send_messages_in_threads=True,
    create_public_threads=True, read_message_history=True, add_reactions=True,
    manage_messages=True, embed_links=True)
#: OAuth2 scopes of the invite link.
SCOPES = ("bot", "applications.commands")
