"""The bot's link to Discord's gateway: which failures are final, and how often it may IDENTIFY.

Discord allows 1,000 IDENTIFYs a day per bot and resets the token of a bot that goes over.
Some gateway close codes mean "this will never work until a person changes something" (a bad
token, an intent not enabled in the Developer Portal): retrying them only burns identifies.
Those are final: the bot stops, and the problem is reported once, with what to do. Every other
failure is retried, and every IDENTIFY waits for `IdentifyBudget`, which spaces them out so a
gateway that keeps failing costs a few dozen identifies a day at most.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
PORTAL = "https://discord.com/developers/applications"

#: Close codes (and login refusals) after which retrying cannot help: meaning, what to do.
FINAL_CLOSES: dict[int, tuple[str, str]] = {
    4004: ("authentication failed (the bot token is wrong or was reset)",
           f"In the Developer Portal ({PORTAL}) open the application, Bot, Reset Token, and put "
           "the new token in KODA_DISCORD_TOKEN."),
    4010: ("invalid shard", "Koda runs one shard; check KODA_DISCORD_GATEWAY_URL is unset."),
    4011: ("sharding required (the bot is in too many guilds for one connection)",
           "Remove the bot from guilds it does not need; Koda runs one shard."),
    4012: ("invalid API version", "Upgrade Koda (its discord.py speaks an API version Discord "
           "no longer accepts)."),
    4013: ("invalid intents", "Upgrade Koda: it asked for intents Discord does not know."),
    4014: ("a privileged intent is not enabled (Message Content)",
           f"In the Developer Portal ({PORTAL}) open the application, Bot, Privileged Gateway "
           "Intents, and turn on MESSAGE CONTENT INTENT; then restart the gateway."),
}


@dataclass(frozen=True)
class LinkProblem:
    """A final failure of the Discord link, as shown in /healthz, `koda doctor` and the alert."""

    code: int
    meaning: str
    fix: str

    @classmethod
    def for_code(cls, code: int) -> LinkProblem | None:
        known = FINAL_CLOSES.get(code)
        if known is None:
            return None
        return cls(code, f"Discord closed the gateway with {code}: {known[0]}", known[1])

    def text(self) -> str:
        return f"{self.meaning}. {self.fix}"


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class IdentifyBudget:
    """Spaces gateway IDENTIFYs: the first is immediate, each one in a run of failures waits
    twice as long as the one before (5 s up to 30 minutes), and never more than `per_day` in
    any 24 hours. A session that stayed up for `stable_after` seconds ends the run.

    With a `path` the count survives the process: a gateway that crashes and is restarted
    over and over keeps backing off (a clean stop ends the run of failures). `clock` and
    `sleep` are injectable so a test can live through a day of failures quickly.
    """

    DAY = 86_400.0

    def __init__(self, per_day: int = 100, first_delay: float = 5.0, max_delay: float = 1800.0,
                 stable_after: float = 600.0, clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep, path: Path | None = None) -> None:
        self.per_day, self.first_delay, self.max_delay = per_day, first_delay, max_delay
        self.stable_after = stable_after
        self.clock, self.sleep = clock, sleep
        self.path = path
        self.times: deque[float] = deque()
        self.streak = 0
        self._up_since: float | None = None
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            state = json.loads(self.path.read_text())
            self.times = deque(float(t) for t in state["times"])
            self.streak = int(state["streak"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or unreadable: start counting afresh

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"times": list(self.times), "streak": self.streak}))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("could not save the identify count: %s", exc)

    def clean_stop(self) -> None:
        """The gateway is stopping on purpose: the next start is no failure."""
        self.streak = 0
        self._save()

    def connected(self) -> None:
        """A session is up (READY or RESUMED)."""
        self._up_since = self.clock()

    def disconnected(self) -> None:
        """The session went down; if it had been up long enough, failures start over."""
        if self._up_since is not None and self.clock() - self._up_since >= self.stable_after:
            self.streak = 0
        self._up_since = None

    def wait(self) -> float:
        """Seconds to wait before the next IDENTIFY."""
        now = self.clock()
        while self.times and now - self.times[0] >= self.DAY:
            self.times.popleft()
        if not self.times:
            return 0.0
        delay = 0.0 if self.streak == 0 else min(self.first_delay * 2 ** (self.streak - 1),
                                                 self.max_delay)
        earliest = self.times[-1] + delay
        if len(self.times) >= self.per_day:
            earliest = max(earliest, self.times[0] + self.DAY)
        return max(0.0, earliest - now)

    async def acquire(self) -> None:
        """Wait for the next IDENTIFY's turn, then count it."""
        self.disconnected()
        delay = self.wait()
        if delay > 0:
            await self.sleep(delay)
        self.times.append(self.clock())
        self.streak += 1
        self._save()

    def used_today(self) -> int:
        now = self.clock()
        return sum(1 for t in self.times if now - t < self.DAY)


Report = Callable[[str, str], None]


@dataclass
class LinkState:
    """What the gateway knows about its Discord link, across bot restarts: shown in /healthz,
    written for `koda doctor`, and each distinct problem alerted once."""

    budget: IdentifyBudget = field(default_factory=IdentifyBudget)
    #: Called with (key, text) for a problem a person must fix; the gateway emits an alert.
    on_problem: Report | None = None
    error: str | None = None  # the latest transient failure (retried)
    problem: LinkProblem | None = None  # a final failure: the bot stays off
    sync_error: str | None = None
    post_error: str | None = None
    identifies: int = 0
    reported: set[str] = field(default_factory=set)
    #: Where `koda doctor` reads the problems from (the state folder).
    state_dir: Path | None = None

    def connected(self) -> None:
        self.error = None
        self._write_state()

    def _write_state(self) -> None:
        if self.state_dir is not None:
            from koda.shared.doctor import write_discord_state

            write_discord_state(self.state_dir, self.problem.text() if self.problem else None,
                                self.sync_error)

    def report(self, key: str, text: str) -> None:
        """Alert once per distinct problem (a retry loop must not flood the alerts)."""
        self._write_state()
        if key in self.reported:
            return
        self.reported.add(key)
        if self.on_problem is not None:
            self.on_problem(key, text)

    def post_failed(self, text: str) -> None:
        log.error("Discord refused a message", extra={"error": text})
        self.post_error = text
        self.report(f"post:{text.split(':', 1)[-1]}", text)

    def final(self, problem: LinkProblem) -> None:
        self.problem = problem
        self.error = problem.text()
        self.report(f"close:{problem.code}", problem.text())
