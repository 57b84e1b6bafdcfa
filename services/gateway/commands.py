"""Slash commands: `/koda status`, `/koda run`, `/koda pause`, `/koda resume`, `/koda pending`.

Only approvers and the owner may use them; anyone else gets an ephemeral refusal. Answers are
ephemeral (only the person who asked sees them) and redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from . import controls, reports, status

if TYPE_CHECKING:
    from .discord_bot import KodaBot


async def _reply(interaction: discord.Interaction[Any], bot: KodaBot, text: str) -> None:
    await interaction.response.send_message(reports.clip(bot.ctx.redact(text)), ephemeral=True)


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
        rows = await status.services(bot.ctx.bus)
        tasks, error = await status.tasks(bot.ctx.bus, bot.ctx.home)
        pending = await bot.ctx.desk.refresh()
        lines = ["**Services**"] + [
            f"{'🟢' if r.status == 'ok' else '🔴'} {r.name}: {r.status}" for r in rows]
        paused = [t.id for t in tasks if t.paused_by]
        lines.append(f"**Tasks:** {len(tasks)}" + (f", paused: {', '.join(paused)}" if paused else ""))
        if error:
            lines.append(f"tasks.json: {error}")
        lines.append(f"**Pending approvals:** {len(pending)}")
        await _reply(interaction, bot, "\n".join(lines))

    @group.command(name="run", description="Run a task now")
    @app_commands.describe(task="Task id from tasks.json")
    async def run_cmd(interaction: discord.Interaction[Any], task: str) -> None:
        if not await allowed(interaction):
            return
        try:
            request = await controls.trigger(bot.ctx.bus, bot.ctx.home, task,
                                             f"discord:{interaction.user.id}")
        except controls.UnknownTask as exc:
            await _reply(interaction, bot, str(exc))
            return
        await _reply(interaction, bot, f"Queued `{task}` as run `{request.run_id}`.")

    @group.command(name="pause", description="Pause a task's schedule")
    @app_commands.describe(task="Task id", reason="Why (shown to others)")
    async def pause_cmd(interaction: discord.Interaction[Any], task: str, reason: str = "") -> None:
        if not await allowed(interaction):
            return
        try:
            await controls.pause(bot.ctx.bus, bot.ctx.home, task,
                                 f"discord:{interaction.user.id}", reason)
        except controls.UnknownTask as exc:
            await _reply(interaction, bot, str(exc))
            return
        await _reply(interaction, bot, f"Paused `{task}`.")

    @group.command(name="resume", description="Resume a paused task")
    @app_commands.describe(task="Task id")
    async def resume_cmd(interaction: discord.Interaction[Any], task: str) -> None:
        if not await allowed(interaction):
            return
        done = await controls.resume(bot.ctx.bus, task, f"discord:{interaction.user.id}")
        await _reply(interaction, bot, f"Resumed `{task}`." if done else f"`{task}` was not paused.")

    @group.command(name="pending", description="List approvals waiting for a decision")
    async def pending_cmd(interaction: discord.Interaction[Any]) -> None:
        if not await allowed(interaction):
            return
        pending = await bot.ctx.desk.refresh()
        if not pending:
            await _reply(interaction, bot, "No approvals are waiting.")
            return
        await _reply(interaction, bot, "\n".join(
            f"• `{r.action}` for `{r.task}` (id `{r.id}`)" for r in pending[:20]))

    tree.add_command(group)
