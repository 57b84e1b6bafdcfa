"""NATS users for the local stack: one per service plus `koda` for the CLI, never none.

`koda up` generates a password per user into `<state>/nats-credentials.json` (mode 0600, in
the state folder the agent cannot read) and writes the users into the local nats.conf. The
permission table is the shipped one (volumes/nats/nats.conf, used by compose): everything
after its USERS_MARKER is copied with each `$KODA_NATS_PASSWORD_<SERVICE>` replaced by the
quoted password, so a permission added for compose is the local stack's too.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from koda.shared.settings import SERVICES, KodaSettings

#: The line of the shipped nats.conf where its users and permissions begin.
USERS_MARKER = "# --- Users and permissions."
#: The CLI's own user (`koda status`, `koda run`, `koda tasks`, `koda site clear`).
CLI_USER = "koda"
CREDENTIALS_FILE = "nats-credentials.json"

#: Added to the shipped users: what the `koda` command publishes, and no service's work.
CLI_USER_BLOCK = """    # The `koda` command of the local stack: manual runs, pauses, site flags, status.
    { user: koda, password: %s, permissions: {
        publish: { allow: [$JS_API, $JS_FLOW_CONTROL, $EVENTS,
                           "koda.runs.>", "$KV.scheduler.pause.>", "$KV.scraper.>"],
                   deny: $DENY_ALL_QUEUES },
        subscribe: $SUBSCRIBE } }
"""


def quote(value: str) -> str:
    """`value` as a nats.conf string: always double-quoted, so a password that looks like a
    number or boolean, or holds `, ; } [ ]`, `#`, `$` or spaces, stays the string it is."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def credentials_path(settings: KodaSettings) -> Path:
    return settings.expanded_state() / CREDENTIALS_FILE


def generate(settings: KodaSettings) -> dict[str, str]:
    """Fresh passwords for every user, written 0600 into the state folder; returns them."""
    passwords = {user: secrets.token_urlsafe(32) for user in (*SERVICES, CLI_USER)}
    path = credentials_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(passwords, out)
    os.replace(tmp, path)
    return passwords


def read(settings: KodaSettings) -> dict[str, str]:
    """The stack's passwords by user; empty if `koda up` never ran here."""
    try:
        data = json.loads(credentials_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def users_config(settings: KodaSettings, passwords: dict[str, str]) -> str:
    """The shipped users and permissions with these passwords, plus the CLI's user."""
    shipped = (settings.source_dir / "volumes" / "nats" / "nats.conf").read_text()
    start = shipped.index(USERS_MARKER)
    text = shipped[start:]
    for service in SERVICES:
        variable = f"$KODA_NATS_PASSWORD_{service.upper()}"
        if variable not in text:
            raise ValueError(f"volumes/nats/nats.conf has no user for {service} ({variable})")
        text = text.replace(variable, quote(passwords[service]))
    end = text.rindex("  ]")  # the end of `authorization { users: [ ... ] }`
    return text[:end] + CLI_USER_BLOCK % quote(passwords[CLI_USER]) + text[end:]


APPROVAL_KEYS_FILE = "approval-keys.json"


def approval_keys(settings: KodaSettings) -> tuple[str, str]:
    """The local stack's approval key pair (private, public), made once into the state folder
    (0600) and kept, so a decision signed before a restart still verifies after it."""
    from koda.shared import approval_keys as keys

    path = settings.expanded_state() / APPROVAL_KEYS_FILE
    try:
        data = json.loads(path.read_text())
        return str(data["signing"]), keys.public_of(str(data["signing"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    private, public = keys.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"signing": private}, out)
    return private, public


def for_cli(settings: KodaSettings) -> KodaSettings:
    """Settings for the `koda` command: the local stack's CLI user unless a user is set."""
    if settings.nats_user:
        return settings
    password = read(settings).get(CLI_USER)
    if not password:
        return settings
    from pydantic import SecretStr

    return settings.model_copy(update={"nats_user": CLI_USER, "nats_password": SecretStr(password)})
