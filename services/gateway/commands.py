"""Slash commands: `/koda status`, `/koda run`, `/koda pause`, `/koda resume`, `/koda pending`.

Only approvers and the owner may use them; anyone else gets an ephemeral refusal. Answers are
ephemeral (only the person who asked sees them) and redacted. Discord wants the first answer
within 3 s: a command that reads or writes the bus answers "thinking" at once, then edits in
the result (or what went wrong) when the bus has answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from koda.shared import controls

from . import reports, status

if TYPE_CHECKING:
    from .discord_bot import KodaBot

log = logging.getLogger(__name__)
WORK_TIMEOUT = 60.0  # well inside the 15 minutes an interaction token can edit its answer


async def _reply(interaction: discord.Interaction[Any], bot: KodaBot, text: str) -> None:
    await interaction.response.send_message(reports.safe(text, bot.ctx.redact), ephemeral=True)


async def _answer(interaction: discord.Interaction[Any], bot: KodaBot,
                  work: Callable[[], Awaitable[str]]) -> None:
    """Defer now, do the work, then edit the answer in: the result, or what went wrong."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        text = await asyncio.wait_for(work(), WORK_TIMEOUT)
    except controls.UnknownTask as exc:
        text = str(exc)
    except Exception as exc:
        log.exception("slash command failed", extra={"command": interaction.command and
                                                     interaction.command.qualified_name})
        text = (f"Koda could not do that ({type(exc).__name__}: its message bus may be down or "
                "slow), so it cannot confirm anything changed. Try again in a minute.")
    await interaction.edit_original_response(content=reports.safe(text, bot.ctx.redact))


def install_commands(tree: app_commands.CommandTree[Any], bot: KodaBot) -> None:
    group = app_commands.Group(name="koda", description="Koda: status, tasks and approvals")

    async def allowed(interaction: discord.Interaction[Any]) -> bool:
        if bot.may_command(interaction.user.id):
            return True
        await _reply(interaction, bot, "You are not allowed to command Koda.")
        return False

    @group.command(name="status", description="Services, paused tasks and pending approvals")
    async def status_cmd(interaction: discord.Interaction[Any]) -> None:
        if not await allowed(interaction):
            return

        async def work() -> str:
            rows = await status.services(bot.ctx.bus)
            tasks, error = await status.tasks(bot.ctx.bus, bot.ctx.home)
            pending = await bot.ctx.desk.refresh()
            lines = ["**Services**"] + [
                f"{'🟢' if r.status == 'ok' else '🔴'} {r.name}: {r.status}" for r in rows]
            paused = [t.id for t in tasks if t.paused_by]
            lines.append(f"**Tasks:** {len(tasks)}"
                         + (f", paused: {', '.join(paused)}" if paused else ""))
            if error:
                lines.append(f"tasks.json: {error}")
            lines.append(f"**Pending approvals:** {len(pending)}")
            return "\n".join(lines)

        await _answer(interaction, bot, work)

    @group.command(name="run", description="Run a task now")
    @app_commands.describe(task="Task id from tasks.json")
    async def run_cmd(interaction: discord.Interaction[Any], task: str) -> None:
        if not await allowed(interaction):
            return

        async def work() -> str:
            request = await controls.trigger(bot.ctx.bus, bot.ctx.home, task,
                                             f"discord:{interaction.user.id}")
            return f"Queued `{task}` as run `{request.run_id}`."

        await _answer(interaction, bot, work)

    @group.command(name="pause", description="Pause a task's schedule")
    @app_commands.describe(task="Task id", reason="Why (shown to others)")
    async def pause_cmd(interaction: discord.Interaction[Any], task: str, reason: str = "") -> None:
        if not await allowed(interaction):
            return

        async def work() -> str:
            await controls.pause(bot.ctx.bus, bot.ctx.home, task,
                                 f"discord:{interaction.user.id}", reason)
            return f"Paused `{task}`."

        await _answer(interaction, bot, work)

    @group.command(name="resume", description="Resume a paused task")
    @app_commands.describe(task="Task id")
    async def resume_cmd(interaction: discord.Interaction[Any], task: str) -> None:
        if not await allowed(interaction):
            return

        async def work() -> str:
            done = await controls.resume(bot.ctx.bus, task, f"discord:{interaction.user.id}")
            return f"Resumed `{task}`." if done else f"`{task}` was not paused."

        await _answer(interaction, bot, work)

    @group.command(name="pending", description="List approvals waiting for a decision")
    async def pending_cmd(interaction: discord.Interaction[Any]) -> None:
        if not await allowed(interaction):
            return

        async def work() -> str:
            pending = await bot.ctx.desk.refresh()
            if not pending:
                return "No approvals are waiting."
            return "\n".join(f"• `{r.action}` for `{r.task}` (id `{r.id}`)" for r in pending[:20])

        await _answer(interaction, bot, work)

    tree.add_command(group)
