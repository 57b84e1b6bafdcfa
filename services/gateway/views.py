"""The Approve / Reject / Edit buttons of an approval message, and the edit form.

Edit opens a form (a Discord modal) holding the arguments as JSON; submitting it approves the
call with the person's arguments (audited in the record and the `approval.decided` event).

They are `DynamicItem`s: the approval id lives in the button's custom id
(`koda:approve:<id>`), so a click is understood by any gateway process, including one started
after the message was posted. Discord allows 100 characters in a custom id; an approval id too
long for that is carried as `~` and a hash of it (`koda:approve:~<32 hex>`), which the bot
resolves against the approvals KV.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from .discord_bot import KodaBot

CUSTOM_ID_LIMIT = 100  # Discord's limit for a component's custom_id
TEMPLATE = r"koda:(?P<verb>approve|reject|edit):(?P<id>~?[A-Za-z0-9._:-]+)"
#: Discord's limit for a text input's value.
INPUT_LIMIT = 4000


def short_ref(approval_id: str) -> str:
    """The hashed form of an approval id, for custom ids."""
    return "~" + hashlib.sha256(approval_id.encode()).hexdigest()[:32]


def button_ref(approval_id: str) -> str:
    """What a button carries for this approval: the id itself when both buttons' custom ids fit
    Discord's limit, else its hash."""
    if len(f"koda:approve:{approval_id}") <= CUSTOM_ID_LIMIT:
        return approval_id
    return short_ref(approval_id)


def custom_id(verb: str, approval_id: str) -> str:
    return f"koda:{verb}:{button_ref(approval_id)}"


class DecisionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One button; its callback hands the click to the bot, which checks the allowlist."""

    def __init__(self, verb: str, ref: str) -> None:
        style = {"approve": discord.ButtonStyle.success, "reject": discord.ButtonStyle.danger}.get(
            verb, discord.ButtonStyle.secondary)
        super().__init__(discord.ui.Button(label=verb.capitalize(), style=style,
                                           custom_id=f"koda:{verb}:{ref}"))
        self.verb, self.ref = verb, ref

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: Any, /) -> DecisionButton:
        return cls(match["verb"], match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: KodaBot = interaction.client  # type: ignore[assignment]
        if self.verb == "edit":
            await bot.on_edit_click(interaction, self.ref)
            return
        await bot.on_decision_click(interaction, self.verb == "approve", self.ref)


class EditForm(discord.ui.Modal, title="Edit, then approve"):
    """The arguments as JSON; submitting approves the call with them."""

    def __init__(self, ref: str, args_json: str) -> None:
        super().__init__(custom_id=f"koda:editform:{ref}"[:CUSTOM_ID_LIMIT], timeout=None)
        self.ref = ref
        self.args: discord.ui.TextInput[Any] = discord.ui.TextInput(
            label="Arguments (JSON object)", style=discord.TextStyle.paragraph,
            default=args_json[:INPUT_LIMIT], max_length=INPUT_LIMIT, custom_id="args")
        self.add_item(self.args)

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        bot: KodaBot = interaction.client  # type: ignore[assignment]
        await bot.on_edit_submit(interaction, self.ref, self.args.value)


def decision_view(approval_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DecisionButton("approve", button_ref(approval_id)))
    view.add_item(DecisionButton("reject", button_ref(approval_id)))
    view.add_item(DecisionButton("edit", button_ref(approval_id)))
    return view
