"""The one exception family of Koda. Subclasses carry data, so no caller matches on strings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class KodaError(Exception):
    """Base of every error Koda raises on purpose."""


@dataclass
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.field}: {self.message}"


class ConfigError(KodaError):
    """A config file that cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class BusError(KodaError):
    """The message bus could not be reached or refused an operation."""


@dataclass
class RetryLater(KodaError):
    """Returned or raised by a handler: put the message back and deliver it again after `delay`."""

    delay: float
    reason: str = ""

    def __str__(self) -> str:
        return f"retry in {self.delay:.1f}s: {self.reason}"


@dataclass
class Permanent(KodaError):
    """Returned or raised by a handler: this message can never succeed; fail it now."""

    reason: str

    def __str__(self) -> str:
        return self.reason


class Superseded(KodaError):
    """Raised by a handler whose delivery was taken over by a newer one (the run's fencing
    token moved on): the message is neither acknowledged nor put back, the newer attempt owns it."""


class NoReply(BusError):
    """A request over the bus got no answer in time; the message names the service and wait."""


class ForeignStack(BusError):
    """The NATS holds the streams of a Koda stack with another home."""


class PortInUse(KodaError):
    """A service's health/metrics port is taken (a second copy of it on this host)."""
