"""What the integration scripts share: input, settings, HTTP, signatures and once-only records.

Standard library only, so a script runs under any Python 3.11+ (the actions service runs it with
`python -I`: no user site, no script folder on the path, which is why each script puts this
folder on `sys.path` itself). A script reads its arguments as JSON on stdin, its credentials
from the environment (only those its manifest entry names), base URLs from settings the
manifest names (so a test or a self-hosted service can point it elsewhere) and writes under
`KODA_DATA`. Exit 77 means "the service rejected my credentials".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

AUTH_FAILURE = 77
USER_AGENT = "koda-scripts/1"


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop with `message` on stderr (the actions service shows its tail to people)."""
    print(message, file=sys.stderr)
    sys.exit(code)


def auth_failed(service: str, detail: str, how: str) -> NoReturn:
    fail(f"401 Unauthorized: {service} rejected the credentials ({detail}). {how}", AUTH_FAILURE)


def read_args() -> dict[str, Any]:
    raw = sys.stdin.read()
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        fail(f"arguments on stdin are not JSON: {exc}", 2)
    if not isinstance(args, dict):
        fail("arguments on stdin must be a JSON object", 2)
    return args


def env(name: str, default: str | None = None) -> str:
    """A secret or setting from the environment; a missing required one ends the script."""
    value = os.environ.get(name) or default
    if value is None:
        fail(f"{name} is not set in .env (run `koda connect` for this service)", 2)
    return value


def has(*names: str) -> bool:
    return all(os.environ.get(n) for n in names)


def data_dir() -> Path:
    return Path(env("KODA_DATA"))


def data_file(relative: str) -> Path:
    """A file the agent named (e.g. an image), which must lie under data/ and not be a cookie jar.

    The agent chooses these paths, and the script uploads what it reads in public: never let it
    point at `.env` or anything else outside data/.
    """
    root = data_dir().resolve()
    path = (root.parent / relative if not Path(relative).is_absolute() else Path(relative)).resolve()
    if root not in path.parents or (root / "cookies") in (path, *path.parents):
        fail(f"{relative!r} is not a file under data/ (cookies excluded)", 2)
    if not path.is_file():
        fail(f"{relative!r} does not exist", 2)
    return path


def write_json(path: Path, value: Any) -> None:
    """Atomic replace within the folder, so a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# --- once-only records ------------------------------------------------------------------------

@dataclass
class Outbox:
    """What this action already did remotely, under its idempotency key, in data/published/.

    Written before a call that creates something (`attempted`) and after it (the remote id), so a
    retry after a crash or a kill either finds the remote object or knows it may exist.
    """

    key: str
    path: Path
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls) -> Outbox:
        key = env("KODA_IDEMPOTENCY_KEY", "")
        if not key:
            fail("KODA_IDEMPOTENCY_KEY is not set: the actions service sets it for every run", 2)
        path = data_dir() / "published" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
        box = cls(key, path, read_json(path, {}))
        box.state.setdefault("idempotency_key", key)
        box.state.setdefault("action", os.environ.get("KODA_ACTION", ""))
        return box

    def get(self, target: str) -> dict[str, Any]:
        value = self.state.get(target)
        return value if isinstance(value, dict) else {}

    def put(self, target: str, **values: Any) -> None:
        self.state[target] = {**self.get(target), **values}
        write_json(self.path, self.state)


def append_log(name: str, entry: dict[str, Any], keep: int = 500) -> None:
    """Append to data/analytics/<name>.json's `items` (what goals.md counts)."""
    path = data_dir() / "analytics" / f"{name}.json"
    doc = read_json(path, {})
    items = doc.get("items") if isinstance(doc.get("items"), list) else []
    items = [*items, entry][-keep:]
    write_json(path, {**doc, "items": items, "updated_at": now_iso()})


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- HTTP -------------------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8")) if self.body else None
        except ValueError:
            return None

    def text(self, limit: int = 500) -> str:
        return self.body.decode("utf-8", "replace")[:limit]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpFailure(Exception):
    """A call that did not succeed; `response` is None when the service could not be reached."""

    def __init__(self, what: str, response: Response | None, reason: str = "") -> None:
        self.response = response
        detail = f"HTTP {response.status}: {response.text()}" if response else reason
        super().__init__(f"{what} failed: {detail}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_follow = urllib.request.build_opener()
_stay = urllib.request.build_opener(_NoRedirect())


def request(method: str, url: str, *, json_body: Any = None, data: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0,
            follow_redirects: bool = True) -> Response:
    """One HTTP call; every status comes back as a `Response` (only no answer at all raises)."""
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    if json_body is not None:
        data = json.dumps(json_body).encode()
        sent.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    opener = _follow if follow_redirects else _stay
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                            resp.read(), resp.url)
    except urllib.error.HTTPError as exc:
        return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read(), url)
    except (urllib.error.URLError, OSError) as exc:
        raise HttpFailure(f"{method} {_safe(url)}", None, str(getattr(exc, "reason", exc))) from exc


def _safe(url: str) -> str:
    """The URL without its query (which may carry a token)."""
    return url.split("?", 1)[0]


def expect(resp: Response, what: str, *ok: int) -> Any:
    """The JSON body of a successful response, or `HttpFailure` naming the call."""
    if resp.status in (ok or (200, 201)):
        return resp.json()
    raise HttpFailure(what, resp)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "koda" + secrets.token_hex(12)
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, content, ctype) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
                     + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- signatures ------------------------------------------------------------------------------

def _pct(value: str) -> str:
    return urllib.parse.quote(value, safe="~-._")


def oauth1_header(method: str, url: str, consumer_key: str, consumer_secret: str, token: str,
                  token_secret: str, params: dict[str, str] | None = None,
                  nonce: str | None = None, timestamp: str | None = None) -> str:
    """An OAuth 1.0a HMAC-SHA1 `Authorization` header (RFC 5849), as X's user context needs.

    `params` are the query and form parameters that are signed; a JSON or multipart body is not.
    """
    split = urllib.parse.urlsplit(url)
    base_url = f"{split.scheme}://{split.netloc}{split.path}"
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": timestamp or str(int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    signed = [*urllib.parse.parse_qsl(split.query, keep_blank_values=True),
              *(params or {}).items(), *oauth.items()]
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_pct(k), _pct(v)) for k, v in signed))
    base = "&".join([method.upper(), _pct(base_url), _pct(normalized)])
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    oauth["oauth_signature"] = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()
    return "OAuth " + ", ".join(f'{_pct(k)}="{_pct(v)}"' for k, v in sorted(oauth.items()))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ghost_admin_token(admin_api_key: str, now: int | None = None) -> str:
    """Ghost's Admin API JWT: HS256 over `{iat, exp, aud: /admin/}` with the key's hex secret."""
    try:
        key_id, secret_hex = admin_api_key.split(":", 1)
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        fail("GHOST_ADMIN_API_KEY must look like <id>:<hex secret> (Ghost Admin > Integrations)", 2)
    iat = int(time.time()) if now is None else now
    header = _b64url(json.dumps({"alg": "HS256", "kid": key_id, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"iat": iat, "exp": iat + 300, "aud": "/admin/"}).encode())
    signature = _b64url(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- Google (YouTube) ------------------------------------------------------------------------

class Google:
    """Calls to Google APIs with an access token from the OAuth 2.0 refresh-token flow.

    Access tokens last an hour and are never stored (data/ is readable by the agent): each run
    gets one, and a 401 gets a new one and one retry. A refused refresh token exits 77.
    """

    def __init__(self) -> None:
        self.token_url = env("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token")
        self.access = ""
        self.refresh()

    def refresh(self) -> None:
        form = urllib.parse.urlencode({
            "client_id": env("GOOGLE_CLIENT_ID"), "client_secret": env("GOOGLE_CLIENT_SECRET"),
            "refresh_token": env("YOUTUBE_REFRESH_TOKEN"), "grant_type": "refresh_token"}).encode()
        resp = request("POST", self.token_url, data=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = resp.json() if isinstance(resp.json(), dict) else {}
        if resp.status in (400, 401) and body.get("error") in ("invalid_grant", "invalid_client",
                                                               "unauthorized_client"):
            auth_failed("Google", f"{body.get('error')}: {body.get('error_description', '')}",
                        "Run `koda connect youtube` to authorise again.")
        self.access = expect(resp, "Google token refresh", 200)["access_token"]

    def call(self, method: str, url: str, what: str, json_body: Any = None) -> Any:
        for attempt in (1, 2):
            resp = request(method, url, json_body=json_body,
                           headers={"Authorization": f"Bearer {self.access}"})
            if resp.status == 401 and attempt == 1:
                self.refresh()
                continue
            if resp.status == 401:
                auth_failed("Google", resp.text(200), "Run `koda connect youtube`.")
            return expect(resp, what, 200)
        raise AssertionError("unreachable")
