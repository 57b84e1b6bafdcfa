"""Console login: one shared token, a signed session cookie, and CSRF protection.

The session cookie is `<nonce>.<hmac(token, nonce)>`, HttpOnly and SameSite=Strict; a form's
CSRF field is another HMAC of the same nonce, so both survive a gateway restart and change
when the token does. A state-changing request must carry the CSRF field and, when the browser
sends one, an Origin of the console itself. Scripts may instead send `Authorization: Bearer`.

Every wrong credential (a login form token, a Bearer token, a forged session cookie) is answered
late by `GuessLimiter`: per client and overall, so neither many parallel requests nor many
clients speed a guesser up, while a right token is never delayed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

from koda.shared.settings import KodaSettings

log = logging.getLogger(__name__)
COOKIE = "koda_session"
TOKEN_FILE = "console-token"


def console_token(settings: KodaSettings) -> str:
    """`KODA_CONSOLE_TOKEN`, or a random token kept in the state dir (mode 0600) so the console is
    never open; its path, never its value, is logged."""
    if settings.console_token is not None and settings.console_token.get_secret_value():
        return settings.console_token.get_secret_value()
    path: Path = settings.expanded_state() / TOKEN_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except OSError as exc:
        # Still never open: nobody knows this token, so nobody gets in until one is set.
        log.error("KODA_CONSOLE_TOKEN is not set and no token file could be written; the console "
                  "refuses everyone", extra={"file": str(path), "error": str(exc)})
        return token
    log.warning("KODA_CONSOLE_TOKEN is not set; generated a console token", extra={"file": str(path)})
    return token


class ConsoleAuth:
    """Checks tokens, issues and verifies sessions and CSRF fields."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def _mac(self, purpose: str, nonce: str) -> str:
        return hmac.new(self._token, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    def new_session(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('session', nonce)}"

    def session_nonce(self, cookie: str | None) -> str | None:
        """The nonce of a valid session cookie, else None."""
        if not cookie or "." not in cookie:
            return None
        nonce, mac = cookie.rsplit(".", 1)
        return nonce if hmac.compare_digest(mac, self._mac("session", nonce)) else None

    def csrf_for(self, nonce: str) -> str:
        return self._mac("csrf", nonce)[:40]

    def csrf_ok(self, nonce: str, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate, self.csrf_for(nonce))


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when a browser's Origin header names this console (absent Origin: not a browser
    cross-site post, which always carries one for POST)."""
    if not origin:
        return True
    if not host:
        return False
    return origin in (f"http://{host}", f"https://{host}")


class GuessLimiter:
    """Spaces out the answers to wrong credentials.

    Each wrong answer takes the next free slot of its client (one per `per_client` seconds) and
    of everyone (one per `overall` seconds) and waits for the later one. Requests sent in
    parallel queue up instead of being answered together, so a client gets at most one wrong
    answer per `per_client` seconds and all clients together one per `overall` seconds. Slots
    in the past are forgotten, so a person who mistyped once waits for nothing.
    """

    def __init__(self, per_client: float = 0.5, overall: float = 0.1, max_wait: float = 120.0) -> None:
        self.per_client, self.overall, self.max_wait = per_client, overall, max_wait
        self._client_next: dict[str, float] = {}
        self._overall_next = 0.0

    def _slot(self, client: str) -> float:
        now = time.monotonic()
        if len(self._client_next) > 10_000:  # forget clients whose slots have passed
            self._client_next = {c: t for c, t in self._client_next.items() if t > now}
        at = max(now, self._client_next.get(client, 0.0), self._overall_next)
        self._client_next[client] = max(at, self._client_next.get(client, 0.0)) + self.per_client
        self._overall_next = max(at, self._overall_next) + self.overall
        return min(at - now, self.max_wait)

    async def wrong(self, client: str | None) -> None:
        """Wait until this wrong credential may be answered."""
        wait = self._slot(client or "?")
        log.warning("console credential refused", extra={"client": client, "delay_s": round(wait, 2)})
        if wait > 0:
            await asyncio.sleep(wait)
