"""The credentials in the home's `.env`, and redaction of their values from any text.

Redaction is the last line of defence: credentials are kept away from the model and from
messages by design, and every log line and outgoing message is scrubbed as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from dotenv import dotenv_values

REDACTED = "[redacted]"
#: Values this short are too likely to match ordinary text to be worth redacting.
_MIN_SECRET_LEN = 6


def read_env_file(path: Path) -> dict[str, str]:
    """The name/value pairs of a `.env` file; an absent file has none."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


class Redactor:
    """Replaces every known secret value in a text with `[redacted]`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._values.update(s for s in secrets if s and len(s) >= _MIN_SECRET_LEN)
        if self._values:
            # Longest first, so a secret containing another is replaced whole.
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return bool(self._values)


def redactor_for_home(home: Path) -> Redactor:
    """A redactor knowing the home's `.env` values and Koda's own credentials from the environment."""
    values = list(read_env_file(home / ".env").values())
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "KODA_NATS_PASSWORD",
                 "KODA_DISCORD_TOKEN", "KODA_CONSOLE_TOKEN"):
        if os.environ.get(name):
            values.append(os.environ[name])
    return Redactor(values)
