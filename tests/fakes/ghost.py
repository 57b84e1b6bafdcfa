"""A fake Ghost Admin API (`/ghost/api/admin/posts/`): an integration's Admin API key checked as
Ghost checks it (HS256 JWT, `kid` = key id, `aud` = /admin/, at most five minutes long), drafts
with `?source=html`, publishing that needs the post's current `updated_at` (else 409), and
Ghost's `{"errors": [...]}` bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from .base import FakeService, Reply, Request, error

API = "/ghost/api/admin"


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _unauthorised(context: str) -> Reply:
    return error(401, {"errors": [{"message": "Authorization failed", "context": context,
                                   "type": "UnauthorizedError", "code": "INVALID_JWT"}]})


class FakeGhost(FakeService):
    def __init__(self) -> None:
        super().__init__()
        self.key_id, self.secret = secrets.token_hex(12), secrets.token_hex(32)
        self.posts: dict[str, dict[str, Any]] = {}
        self.clock = 0  # updated_at ticks

    @property
    def admin_api_key(self) -> str:
        return f"{self.key_id}:{self.secret}"

    def published(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.posts.values() if p["status"] == "published"]

    def _check_token(self, request: Request) -> Reply | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Ghost "):
            return _unauthorised("Authorization header format is \"Authorization: Ghost [token]\"")
        try:
            head_b, payload_b, sig_b = header[6:].split(".")
            head, payload = json.loads(_unb64(head_b)), json.loads(_unb64(payload_b))
        except ValueError:
            return _unauthorised("jwt malformed")
        if head.get("kid") != self.key_id or head.get("alg") != "HS256":
            return _unauthorised("Unknown Admin API Key")
        signed = f"{head_b}.{payload_b}".encode()
        expected = hmac.new(bytes.fromhex(self.secret), signed, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(sig_b)):
            return _unauthorised("invalid signature")
        now = time.time()
        if payload.get("aud") != "/admin/":
            return _unauthorised("jwt audience invalid. expected: /admin/")
        if payload.get("exp", 0) < now:
            return _unauthorised("jwt expired")
        if payload.get("exp", 0) - payload.get("iat", 0) > 300:
            return _unauthorised("maxAge exceeded")
        return None

    def _stamp(self) -> str:
        self.clock += 1
        return time.strftime("%Y-%m-%dT%H:%M:", time.gmtime()) + f"{self.clock % 60:02d}.000Z"

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(API):
            return error(404, {"errors": [{"message": "Resource not found", "type": "NotFoundError"}]})
        denied = self._check_token(request)
        if denied:
            return denied
        path = request.path[len(API):]
        body = request.json() if request.body else {}
        if path == "/posts/" and request.method == "GET":
            wanted = request.query.get("filter", "")
            found = [p for p in self.posts.values() if not wanted.startswith("slug:")
                     or p["slug"] == wanted[5:]]
            return Reply(200, {"posts": found, "meta": {"pagination": {"page": 1, "total": len(found)}}})
        if path == "/posts/" and request.method == "POST":
            if request.query.get("source") != "html":
                return error(422, {"errors": [{"message": "Validation error", "type": "ValidationError",
                                               "context": "send ?source=html with html content"}]})
            data = (body.get("posts") or [{}])[0]
            if not data.get("title"):
                return error(422, {"errors": [{"message": "Validation error, cannot save post.",
                                               "context": "Value in [posts.title] cannot be blank.",
                                               "type": "ValidationError"}]})
            post_id = secrets.token_hex(12)
            post = {"id": post_id, "uuid": secrets.token_hex(16), "title": data["title"],
                    "slug": data.get("slug") or data["title"].lower().replace(" ", "-"),
                    "html": data.get("html", ""), "status": data.get("status", "draft"),
                    "custom_excerpt": data.get("custom_excerpt"),
                    "tags": [{"name": t["name"]} for t in data.get("tags", [])],
                    "updated_at": self._stamp(), "url": f"{self.url}/p/{post_id}/"}
            self.posts[post_id] = post
            return Reply(201, {"posts": [post]})
        if path.startswith("/posts/") and path.endswith("/"):
            one = self.posts.get(path[7:-1])
            if one is None:
                return error(404, {"errors": [{"message": "Post not found.", "type": "NotFoundError"}]})
            post = one
            if request.method == "GET":
                return Reply(200, {"posts": [post]})
            if request.method == "PUT":
                data = (body.get("posts") or [{}])[0]
                if data.get("updated_at") != post["updated_at"]:
                    return error(409, {"errors": [{"message": "Saving failed! Someone else is editing "
                                                   "this post.", "type": "UpdateCollisionError"}]})
                post.update({k: v for k, v in data.items() if k in ("status", "title", "html")})
                post["updated_at"] = self._stamp()
                if post["status"] == "published":
                    post["url"] = f"{self.url}/{post['slug']}/"
                return Reply(200, {"posts": [post]})
        return error(404, {"errors": [{"message": "Resource not found", "type": "NotFoundError"}]})
