"""Console login: one shared token, a signed session cookie, and CSRF protection.

The session cookie is `<nonce>.<hmac(token, nonce)>`, HttpOnly and SameSite=Strict; a form's
CSRF field is another HMAC of the same nonce, so both survive a gateway restart and change
when the token does. A state-changing request must carry the CSRF field and, when the browser
sends one, an Origin of the console itself. Scripts may instead send `Authorization: Bearer`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
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
