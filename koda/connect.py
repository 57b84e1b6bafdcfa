"""`koda connect SERVICE`: ask a person for one integration's credentials, check them with a real
call to the service, and write them to the home's `.env` (mode 0600), leaving other entries be.

Secrets are read without echo on a terminal (one line each from stdin otherwise, so it can be
scripted) and never printed. The checks use the same client code as the helper scripts
(`scripts/koda_api.py` from the template): one implementation of each signature. Base URLs that
a self-hosted service or a test overrides (e.g. BLUESKY_SERVICE_URL) are read from `.env`.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import os
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from koda.shared.errors import KodaError
from koda.shared.integrations import SERVICES


@dataclass(frozen=True)
class Field:
    name: str
    prompt: str
    secret: bool = True


FIELDS: dict[str, tuple[Field, ...]] = {
    "bluesky": (Field("BLUESKY_HANDLE", "Bluesky handle (e.g. you.bsky.social)", False),
                Field("BLUESKY_APP_PASSWORD", "App password (Settings > Privacy and security > "
                      "App passwords; not your account password)")),
    "x": (Field("X_API_KEY", "API key (developer portal > your app > Keys and tokens)"),
          Field("X_API_SECRET", "API key secret"),
          Field("X_ACCESS_TOKEN", "Access token (generated with Read and write permission)"),
          Field("X_ACCESS_TOKEN_SECRET", "Access token secret")),
    "wordpress": (Field("WORDPRESS_URL", "Site URL (e.g. https://blog.example.com)", False),
                  Field("WORDPRESS_USER", "User name", False),
                  Field("WORDPRESS_APP_PASSWORD", "Application password (Users > Profile > "
                        "Application passwords)")),
    "ghost": (Field("GHOST_URL", "Site URL (e.g. https://you.ghost.io)", False),
              Field("GHOST_ADMIN_API_KEY", "Admin API key of a custom integration (Settings > "
                    "Integrations), <id>:<secret>")),
    "airtable": (Field("AIRTABLE_TOKEN", "Personal access token with data.records:write on the base"),
                 Field("AIRTABLE_BASE_ID", "Base id (starts with app, from the base's URL)", False)),
    "youtube": (Field("GOOGLE_CLIENT_ID", "OAuth client id (Google Cloud > Credentials, a Desktop "
                      "app client)", False),
                Field("GOOGLE_CLIENT_SECRET", "OAuth client secret"),
                Field("YOUTUBE_REFRESH_TOKEN", "Refresh token for the channel's account (scopes "
                      "youtube and yt-analytics.readonly)")),
}
assert {k: tuple(f.name for f in v) for k, v in FIELDS.items()} == SERVICES


class CheckFailed(KodaError):
    """The service refused the values (or could not be reached); the text says which."""


def _api() -> ModuleType:
    from koda.shared.settings import SOURCE_DIR

    path = SOURCE_DIR / "volumes" / "koda" / "scripts" / "koda_api.py"
    spec = importlib.util.spec_from_file_location("koda_scripts_api", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _answer(resp: Any, service: str) -> Any:
    if resp.ok:
        return resp.json()
    raise CheckFailed(f"{service} answered HTTP {resp.status}: {resp.text(300)}")


def check_bluesky(api: ModuleType, v: dict[str, str]) -> str:
    base = v.get("BLUESKY_SERVICE_URL") or "https://bsky.social"
    body = _answer(api.request("POST", f"{base.rstrip('/')}/xrpc/com.atproto.server.createSession",
                               json_body={"identifier": v["BLUESKY_HANDLE"],
                                          "password": v["BLUESKY_APP_PASSWORD"]}), "Bluesky")
    return f"signed in as {body['handle']} ({body['did']})"


def check_x(api: ModuleType, v: dict[str, str]) -> str:
    url = f"{(v.get('X_API_URL') or 'https://api.x.com').rstrip('/')}/2/users/me"
    auth = api.oauth1_header("GET", url, v["X_API_KEY"], v["X_API_SECRET"], v["X_ACCESS_TOKEN"],
                             v["X_ACCESS_TOKEN_SECRET"])
    body = _answer(api.request("GET", url, headers={"Authorization": auth}), "X")
    return f"signed in as @{body['data']['username']}"


def check_wordpress(api: ModuleType, v: dict[str, str]) -> str:
    url = f"{v['WORDPRESS_URL'].rstrip('/')}/wp-json/wp/v2/users/me?context=edit"
    auth = api.basic_auth(v["WORDPRESS_USER"], v["WORDPRESS_APP_PASSWORD"])
    body = _answer(api.request("GET", url, headers={"Authorization": auth}), "WordPress")
    if "publish_posts" not in (body.get("capabilities") or {}):
        raise CheckFailed(f"WordPress user {body.get('slug')} cannot publish posts")
    return f"signed in as {body.get('name') or body.get('slug')}, who can publish posts"


def check_ghost(api: ModuleType, v: dict[str, str]) -> str:
    key = v["GHOST_ADMIN_API_KEY"]
    if ":" not in key:
        raise CheckFailed("the Admin API key looks like <id>:<secret>")
    url = f"{v['GHOST_URL'].rstrip('/')}/ghost/api/admin/posts/?limit=1"
    _answer(api.request("GET", url, headers={"Authorization": f"Ghost {api.ghost_admin_token(key)}",
                                             "Accept-Version": "v5.0"}), "Ghost")
    return "the Admin API accepted the key"


def check_airtable(api: ModuleType, v: dict[str, str]) -> str:
    base = (v.get("AIRTABLE_API_URL") or "https://api.airtable.com").rstrip("/")
    headers = {"Authorization": f"Bearer {v['AIRTABLE_TOKEN']}"}
    who = _answer(api.request("GET", f"{base}/v0/meta/whoami", headers=headers), "Airtable")
    scopes = who.get("scopes") or []
    if scopes and "data.records:write" not in scopes:
        raise CheckFailed("the token lacks the data.records:write scope")
    table = urllib.parse.quote(v.get("AIRTABLE_MEMBERS_TABLE") or "Members", safe="")
    _answer(api.request("GET", f"{base}/v0/{v['AIRTABLE_BASE_ID']}/{table}?maxRecords=1",
                        headers=headers), "Airtable (reading the members table)")
    return f"token of {who.get('id')} can read the base's {urllib.parse.unquote(table)} table"


def check_youtube(api: ModuleType, v: dict[str, str]) -> str:
    token_url = v.get("GOOGLE_TOKEN_URL") or "https://oauth2.googleapis.com/token"
    form = urllib.parse.urlencode({"client_id": v["GOOGLE_CLIENT_ID"],
                                   "client_secret": v["GOOGLE_CLIENT_SECRET"],
                                   "refresh_token": v["YOUTUBE_REFRESH_TOKEN"],
                                   "grant_type": "refresh_token"}).encode()
    token = _answer(api.request("POST", token_url, data=form, headers={
        "Content-Type": "application/x-www-form-urlencoded"}), "Google")["access_token"]
    base = (v.get("YOUTUBE_API_URL") or "https://www.googleapis.com/youtube/v3").rstrip("/")
    body = _answer(api.request("GET", f"{base}/channels?part=snippet&mine=true",
                               headers={"Authorization": f"Bearer {token}"}), "YouTube")
    if not body.get("items"):
        raise CheckFailed("this Google account has no YouTube channel")
    return f"channel {body['items'][0]['snippet']['title']!r}"


CHECKS: dict[str, Callable[[ModuleType, dict[str, str]], str]] = {
    "bluesky": check_bluesky, "x": check_x, "wordpress": check_wordpress, "ghost": check_ghost,
    "airtable": check_airtable, "youtube": check_youtube,
}


def _ask(field: Field, current: str | None) -> str:
    keep = " [set; Enter keeps it]" if current else ""
    prompt = f"{field.prompt}{keep}: "
    if field.secret and sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        print(prompt, end="", flush=True)
        value = sys.stdin.readline().rstrip("\n")
        if field.secret or not sys.stdin.isatty():
            print()
    return value.strip() or (current or "")


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "-_.:/@+=," for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_env(path: Path, values: dict[str, str]) -> None:
    """Set `values` in the `.env` at `path`, keeping every other line, atomically, mode 0600."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    left = dict(values)
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if "=" in line and not line.lstrip().startswith("#") and name in left:
            out.append(f"{name}={_quote(left.pop(name))}")
        else:
            out.append(line)
    out += [f"{k}={_quote(v)}" for k, v in left.items()]
    tmp = path.with_name(f".env.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cmd_connect(args: argparse.Namespace) -> int:
    from koda.cli import settings_from
    from koda.shared.home import HomeLayout
    from koda.shared.secrets import read_env_file

    settings = settings_from(args)
    layout = HomeLayout(settings.expanded_home())
    if not layout.root.is_dir():
        print(f"{layout.root} does not exist; run `koda init` first", file=sys.stderr)
        return 1
    service = args.service
    current = read_env_file(layout.env)
    print(f"Connecting {service}. Values are written to {layout.env} (mode 0600) and never shown.")
    values = {f.name: _ask(f, current.get(f.name)) for f in FIELDS[service]}
    empty = [name for name, value in values.items() if not value]
    if empty:
        print(f"nothing written: {', '.join(empty)} left empty", file=sys.stderr)
        return 1
    try:
        said = CHECKS[service](_api(), {**current, **values})
    except CheckFailed as exc:
        print(f"nothing written: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # no answer at all, or an answer that is not the service's
        print(f"nothing written: could not check with {service}: {exc}", file=sys.stderr)
        return 1
    write_env(layout.env, values)
    print(f"{service}: {said}. Saved {', '.join(values)} to {layout.env}.")
    return 0


def register(sub: Any) -> dict[str, Any]:
    """Add `connect` to the `koda` parser."""
    p = sub.add_parser("connect", help="set up one integration's credentials: asks, checks, saves")
    p.add_argument("service", choices=sorted(FIELDS))
    return {"connect": cmd_connect}
