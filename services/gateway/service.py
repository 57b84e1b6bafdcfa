"""Gateway: where people meet Koda. The web console always; the Discord bot when a token is set.

Loops it runs beside the base service's heartbeat: the console (uvicorn, on its own port), the
approval sweeper (reminders, expiry, re-dispatch of an approval cut short by a crash), and with
Discord: the bot, the audit-log consumer that turns events into messages, and the daily digest.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from koda.shared.events import AlertEvent
from koda.shared.home import HomeLayout
from koda.shared.service import Service
from koda.shared.supervised import keep_running

from .auth import ConsoleAuth, console_token
from .context import GatewayContext
from .desk import ApprovalDesk
from .discord_link import FINAL_CLOSES, IdentifyBudget, LinkProblem, LinkState

if TYPE_CHECKING:
    from .discord_bot import KodaBot
    from .webserver import ConsoleServer

log = logging.getLogger(__name__)


class GatewayService(Service):
    name = "gateway"

    bot: KodaBot | None = None
    console_error: str | None = None
    console: ConsoleServer | None = None

    @property
    def link(self) -> LinkState:
        """The Discord link's state, shared by every bot client this process starts."""
        if not hasattr(self, "_link"):
            state = self.settings.expanded_state()
            self._link = LinkState(on_problem=self._alert_discord, state_dir=state,
                                   budget=IdentifyBudget(path=state / "discord-identifies.json"))
        return self._link

    @property
    def discord_error(self) -> str | None:
        return self.link.error

    async def setup(self) -> None:
        self.desk = ApprovalDesk(self.bus, self.registry)
        self.ctx = GatewayContext(self.settings, self.bus, HomeLayout(self.settings.expanded_home()),
                                  self.desk, self.redact)
        token = console_token(self.settings)
        discord_token = self.settings.discord_token
        self.redact.add([token, discord_token.get_secret_value() if discord_token else ""])
        await self._start_console(token)
        redispatched = await self.desk.store.dispatch_pending()
        if redispatched:
            log.info("re-published approved actions cut short", extra={"count": redispatched})
        await self.desk.refresh()
        if self.settings.discord_token is None or not self.settings.discord_token.get_secret_value():
            log.info("Discord bot off: KODA_DISCORD_TOKEN is not set (the console still runs)")
            return
        with warnings.catch_warnings():
            # discord.py imports audioop for voice (deprecated since 3.11); Koda uses no voice.
            warnings.simplefilter("ignore", DeprecationWarning)
            from .discord_bot import KodaBot, point_at

        point_at(self.settings.discord_api_base, self.settings.discord_gateway_url)
        self.bot = KodaBot(self.ctx, self.link)
        self.stack.push_async_callback(self._close_bot)

    async def _start_console(self, token: str) -> None:
        from .webserver import ConsoleServer

        def build() -> Any:
            from .console import build_app  # Starlette: only once someone visits

            return build_app(self.ctx, ConsoleAuth(token))

        port = self.settings.console_listen_port()
        server = ConsoleServer(build, self.settings.http_host, port)
        try:
            await server.start()
        except OSError as exc:
            # A busy port must not take approvals (Discord, expiry) down with it: say so loudly.
            self.console_error = f"cannot listen on {self.settings.http_host}:{port}: {exc}"
            log.error("console not started", extra={"error": self.console_error})
            return
        self.console = server
        self.stack.push_async_callback(server.stop)
        log.info("console listening", extra={"port": port})

    async def _close_bot(self) -> None:
        if self.bot is not None and not self.bot.is_closed():
            await self.bot.close()

    def health_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "console": self.console_error or "ok",
            "discord": "off" if self.bot is None else
            ("connected" if self.bot.is_ready() and not self.link.problem
             else self.link.error or "connecting")}
        if self.bot is not None:
            detail["discord_commands"] = self.link.sync_error or "ok"
            detail["discord_identifies_today"] = self.link.budget.used_today()
            if self.link.post_error:
                detail["discord_last_refusal"] = self.link.post_error
        return detail

    def _alert_discord(self, key: str, text: str) -> None:
        """One `alert` event per distinct Discord problem (for the console, and for Discord's
        alerts channel when the problem is not the link itself)."""
        if self._bus is None:
            return
        event = self.bus.event("alert", text, severity="error",
                               data=AlertEvent(kind="discord", problem=key))

        async def emit() -> None:
            try:
                await self.bus.emit(event)
            except Exception as exc:
                log.warning("could not emit the Discord alert: %s", exc)

        pending: set[asyncio.Task[None]] = self.__dict__.setdefault("_alert_tasks", set())
        task = asyncio.get_running_loop().create_task(emit())
        pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(pending.discard)

    async def run(self) -> None:
        loops = [self._sweep_loop()]
        if self.bot is not None:
            from .events import consume_events

            token = self.settings.discord_token.get_secret_value()  # type: ignore[union-attr]
            loops += [self._bot_loop(token),
                      consume_events(self.bus, self._deliver, self.stopping),
                      keep_running("digest", self._digest_loop, self.stopping)]
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await self.stopping.wait()
            self.link.budget.clean_stop()
        finally:
            await self._close_bot()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _bot_loop(self, token: str) -> None:
        """Run the bot; if Discord cannot be reached, try again with a fresh client and backoff.
        A refused token or a final gateway close (docs/discord.md: 4004, 4014, ...) is final:
        reported once in /healthz, `koda doctor` and an alert, and the rest runs on."""
        import discord

        from .discord_bot import KodaBot

        delay = 2.0
        while not self.stopping.is_set():
            assert self.bot is not None
            try:
                await self.bot.start(token, reconnect=True)
                return
            except asyncio.CancelledError:
                raise
            except discord.LoginFailure as exc:
                self.link.final(LinkProblem(4004, f"login refused: {exc}", FINAL_CLOSES[4004][1]))
                log.error("Discord refused the bot token; the bot stays off")
                return
            except (discord.PrivilegedIntentsRequired, discord.ConnectionClosed) as exc:
                code = 4014 if isinstance(exc, discord.PrivilegedIntentsRequired) else exc.code
                problem = LinkProblem.for_code(code)
                if problem is not None:
                    self.link.final(problem)
                    log.error("Discord closed the gateway for good; the bot stays off",
                              extra={"code": code, "error": problem.text()})
                    await self._close_bot()
                    return
                self.link.error = self.redact(f"gateway closed with {code}")
                log.warning("Discord gateway closed (%s), retrying in %.0f s", code, delay)
            except Exception as exc:
                self.link.error = self.redact(f"{type(exc).__name__}: {exc}")
                log.warning("Discord unreachable, retrying in %.0f s: %s", delay, self.link.error)
            await self._close_bot()
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return
            except TimeoutError:
                pass
            delay = min(delay * 2, 60.0)
            self.bot = KodaBot(self.ctx, self.link)

    async def _deliver(self, event: Any) -> None:
        assert self.bot is not None
        if self.link.problem is not None:
            return  # the bot is off until a person fixes it: the console shows the event
        if not self.bot.ready.is_set():
            raise RuntimeError("Discord not connected yet")
        await self.bot.deliver(event)

    async def _sweep_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.desk.sweep()
                # Wakes paused runs whose wake-up was cut short (a NATS or gateway restart).
                await self.desk.store.dispatch_pending()
                if self.bot is not None and self.bot.ready.is_set():
                    await self.bot.post_pending()
            except Exception:
                log.exception("approval sweep failed")
            try:
                await asyncio.wait_for(self.stopping.wait(), self.settings.approval_sweep_interval)
            except TimeoutError:
                pass

    async def _digest_loop(self) -> None:
        zone = ZoneInfo(self.settings.timezone)
        while not self.stopping.is_set():
            now = datetime.now(zone)
            due = now.replace(hour=self.settings.digest_hour, minute=0, second=0, microsecond=0)
            if due <= now:
                due += timedelta(days=1)
            try:
                await asyncio.wait_for(self.stopping.wait(), (due - now).total_seconds())
                return
            except TimeoutError:
                pass
            await self.post_digest(datetime.now(UTC) - timedelta(days=1))

    async def post_digest(self, since: datetime) -> str:
        """Post the digest of everything since `since` to the reports channel; returns its text."""
        from . import reports
        from .events import events_since

        assert self.bot is not None
        events = await events_since(self.bus, since)
        text = reports.digest_text(events, await self.desk.refresh(), self.redact,
                                   datetime.now(ZoneInfo(self.settings.timezone)).date().isoformat())
        try:
            await self.bot.send(self.settings.discord_reports_channel, text)
        except Exception:
            log.exception("could not post the daily digest")
        return text


SERVICE = GatewayService
