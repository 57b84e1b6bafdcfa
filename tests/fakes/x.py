"""A fake X API v2: POST /2/media/upload (multipart) and POST /2/tweets, authorised only by a
valid OAuth 1.0a user-context signature (RFC 5849 HMAC-SHA1, checked here independently of the
client), with X's problem-JSON errors and its x-rate-limit-* headers.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import hmac
import secrets
import time
import urllib.parse
from typing import Any

from .base import FakeService, Reply, Request

PROBLEM = "application/problem+json"


def error(status: int, body: Any) -> Reply:
    """X answers errors as problem details (RFC 7807), typed application/problem+json."""
    return Reply(status, body, content_type=PROBLEM)

UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}


def _enc(value: str) -> str:
    return urllib.parse.quote(value, safe="~-._")


def verify_oauth1(method: str, url: str, header: str, consumer: tuple[str, str],
                  token: tuple[str, str], form: dict[str, str] | None = None) -> str | None:
    """None when the header is a valid signature by this consumer and token; else why not."""
    if not header.startswith("OAuth "):
        return "no OAuth header"
    params = {}
    for part in header[6:].split(","):
        key, _, value = part.strip().partition("=")
        params[urllib.parse.unquote(key)] = urllib.parse.unquote(value.strip('"'))
    if params.get("oauth_consumer_key") != consumer[0] or params.get("oauth_token") != token[0]:
        return "unknown consumer key or token"
    if params.get("oauth_signature_method") != "HMAC-SHA1" or params.get("oauth_version", "1.0") != "1.0":
        return "unsupported signature method"
    if abs(time.time() - int(params.get("oauth_timestamp", "0"))) > 300:
        return "timestamp out of range"
    signature = params.pop("oauth_signature", "")
    split = urllib.parse.urlsplit(url)
    pairs = [*urllib.parse.parse_qsl(split.query, keep_blank_values=True), *(form or {}).items(),
             *params.items()]
    encoded = sorted((_enc(k), _enc(v)) for k, v in pairs)
    signed = "&".join([method, _enc(f"{split.scheme}://{split.netloc}{split.path}"),
                       _enc("&".join(f"{k}={v}" for k, v in encoded))])
    signing_key = f"{_enc(consumer[1])}&{_enc(token[1])}".encode()
    expected = base64.b64encode(hmac.new(signing_key, signed.encode(), hashlib.sha1).digest()).decode()
    return None if hmac.compare_digest(expected, signature) else "bad signature"


def parse_multipart(request: Request) -> dict[str, Any]:
    """Field name -> str value, or (filename, bytes) for a file part."""
    raw = b"Content-Type: " + request.headers.get("content-type", "").encode() + b"\r\n\r\n" + request.body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload: bytes = part.get_payload(decode=True)  # type: ignore[assignment]
        filename = part.get_filename()
        out[str(name)] = (filename, payload) if filename else payload.decode()
    return out


class FakeX(FakeService):
    def __init__(self, consumer: tuple[str, str], token: tuple[str, str]) -> None:
        super().__init__()
        self.consumer, self.token = consumer, token
        self.tweets: dict[str, dict[str, Any]] = {}
        self.media: dict[str, bytes] = {}
        self.nonces: set[str] = set()
        self.remaining = 100
        self.next_id = 1_860_000_000_000_000_000

    def _id(self) -> str:
        self.next_id += secrets.randbelow(1000) + 1
        return str(self.next_id)

    def _limits(self, reply: Reply) -> Reply:
        reply.headers.update({"x-rate-limit-limit": "100",
                              "x-rate-limit-remaining": str(max(self.remaining, 0)),
                              "x-rate-limit-reset": str(int(time.time()) + 900)})
        return reply

    def handle(self, request: Request) -> Reply:
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        why = verify_oauth1(request.method, f"http://{request.headers.get('host')}{request.url}",
                            request.headers.get("authorization", ""), self.consumer, self.token,
                            request.form() if request.headers.get("content-type", "").startswith(
                                "application/x-www-form-urlencoded") else None)
        nonce = request.headers.get("authorization", "").split("oauth_nonce=\"")[-1].split("\"")[0]
        if why is None and nonce in self.nonces:
            why = "nonce reused"
        if why is not None:
            return error(401, UNAUTHORIZED)
        self.nonces.add(nonce)
        if request.method == "GET" and request.path == "/2/users/me":
            return self._limits(Reply(200, {"data": {"id": self.token[0].split("-")[0], "name": "The Creator",
                                                     "username": "creator"}}))
        if request.method == "POST" and request.path == "/2/media/upload" and multipart:
            fields = parse_multipart(request)
            if "media" not in fields or fields.get("media_category") not in ("tweet_image", "tweet_gif"):
                return error(400, {"errors": [{"message": "media and media_category are required"}],
                                   "title": "Invalid Request", "type": "https://api.x.com/2/problems/invalid-request",
                                   "detail": "One or more parameters to your request was invalid."})
            media_id = self._id()
            self.media[media_id] = fields["media"][1]
            return self._limits(Reply(200, {"data": {
                "id": media_id, "media_key": f"3_{media_id}", "size": len(self.media[media_id]),
                "expires_after_secs": 86400, "image": {"image_type": "image/png", "w": 1, "h": 1}}}))
        if request.method == "POST" and request.path == "/2/tweets":
            self.remaining -= 1
            if self.remaining < 0:
                return self._limits(error(429, {"title": "Too Many Requests", "detail": "Too Many Requests",
                                                "type": "about:blank", "status": 429}))
            body = request.json() or {}
            text = body.get("text", "")
            if any(t["text"] == text for t in self.tweets.values()):
                return self._limits(error(403, {
                    "detail": "You are not allowed to create a Tweet with duplicate content.",
                    "type": "about:blank", "title": "Forbidden", "status": 403}))
            for media_id in (body.get("media") or {}).get("media_ids", []):
                if media_id not in self.media:
                    return self._limits(error(400, {
                        "errors": [{"parameters": {"media.media_ids": [media_id]},
                                    "message": "Your media IDs are invalid."}],
                        "title": "Invalid Request",
                        "detail": "One or more parameters to your request was invalid.",
                        "type": "https://api.x.com/2/problems/invalid-request"}))
            tweet_id = self._id()
            self.tweets[tweet_id] = body
            return self._limits(Reply(201, {"data": {"id": tweet_id, "text": text,
                                                     "edit_history_tweet_ids": [tweet_id]}}))
        return error(404, {"title": "Not Found Error", "type": "https://api.x.com/2/problems/resource-not-found",
                           "detail": f"Could not find {request.path}", "status": 404})
