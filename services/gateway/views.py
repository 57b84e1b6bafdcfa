"""The Approve / Reject buttons of an approval message.

They are `DynamicItem`s: the approval id lives in the button's custom id
(`koda:approve:<id>`), so a click is understood by any gateway process, including one started
after the message was posted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

if TYPE_CHECKING:
    from .discord_bot import KodaBot

TEMPLATE = r"koda:(?P<verb>approve|reject):(?P<id>[A-Za-z0-9._:-]+)"


class DecisionButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One button; its callback hands the click to the bot, which checks the allowlist."""

    def __init__(self, verb: str, approval_id: str) -> None:
        style = discord.ButtonStyle.success if verb == "approve" else discord.ButtonStyle.danger
        super().__init__(discord.ui.Button(label=verb.capitalize(), style=style,
                                           custom_id=f"koda:{verb}:{approval_id}"))
        self.verb, self.approval_id = verb, approval_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: Any, /) -> DecisionButton:
        return cls(match["verb"], match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: KodaBot = interaction.client  # type: ignore[assignment]
        await bot.on_decision_click(interaction, self.verb == "approve", self.approval_id)


def decision_view(approval_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DecisionButton("approve", approval_id))
    view.add_item(DecisionButton("reject", approval_id))
    return view
