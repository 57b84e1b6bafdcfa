"""A fake Bluesky PDS speaking XRPC as the real one does (bluesky-social/atproto, packages/pds):
sessions from an app password, bearer access tokens that expire (400 ExpiredToken, which the
client answers with refreshSession), blobs, records with client-chosen TID keys, handle
resolution, error bodies `{"error", "message"}` and the RateLimit-* headers of its rate limiter.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any

from .base import FakeService, Reply, Request, error

XRPC = "/xrpc/"
TID = "234567abcdefghijklmnopqrstuvwxyz"


def cid_of(data: bytes) -> str:
    return "bafyrei" + base64.b32encode(hashlib.sha256(data).digest()).decode().lower().rstrip("=")[:52]


class FakeBluesky(FakeService):
    def __init__(self, handle: str, app_password: str, others: dict[str, str] | None = None) -> None:
        super().__init__()
        self.account, self.app_password = handle, app_password
        self.did = "did:plc:" + hashlib.sha256(handle.encode()).hexdigest()[:24]
        self.handles = {handle: self.did, **(others or {})}  # handle -> did, for resolveHandle
        self.access: dict[str, bool] = {}   # token -> still valid
        self.refresh: set[str] = set()
        self.records: dict[tuple[str, str], dict[str, Any]] = {}  # (collection, rkey) -> record
        self.blobs: dict[str, bytes] = {}
        self.sessions = 0
        self.rate_limited = 0  # answer this many next writes with 429

    # --- what tests use -------------------------------------------------------------------

    def posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for (c, _), r in self.records.items() if c == "app.bsky.feed.post"]

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access = dict.fromkeys(self.access, False)

    # --- the service ----------------------------------------------------------------------

    def _limits(self, reply: Reply) -> Reply:
        reset = int(time.time()) + 3600
        reply.headers.update({"RateLimit-Limit": "5000", "RateLimit-Remaining": "4997",
                              "RateLimit-Reset": str(reset), "RateLimit-Policy": "5000;w=3600"})
        return reply

    def _auth(self, request: Request) -> Reply | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return error(401, {"error": "AuthMissing", "message": "Authentication Required"})
        valid = self.access.get(header[7:])
        if valid is None:
            return error(400, {"error": "InvalidToken", "message": "Token could not be verified"})
        if not valid:
            return error(400, {"error": "ExpiredToken", "message": "Token has expired"})
        return None

    def _session(self) -> dict[str, Any]:
        access, refresh = "acc-" + secrets.token_hex(16), "ref-" + secrets.token_hex(16)
        self.access[access] = True
        self.refresh.add(refresh)
        self.sessions += 1
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.account, "did": self.did,
                "active": True}

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(XRPC):
            return error(404, {"error": "NotFound", "message": "Not Found"})
        nsid = request.path[len(XRPC):]
        if nsid == "com.atproto.server.createSession":
            body = request.json() or {}
            known = body.get("identifier") in (self.account, self.did)
            if not known or body.get("password") != self.app_password:
                return error(401, {"error": "AuthenticationRequired",
                                   "message": "Invalid identifier or password"})
            return self._limits(Reply(200, self._session()))
        if nsid == "com.atproto.server.refreshSession":
            token = request.headers.get("authorization", "")[7:]
            if token not in self.refresh:
                return error(400, {"error": "ExpiredToken", "message": "Token has been revoked"})
            self.refresh.discard(token)  # refresh tokens are single use
            return Reply(200, self._session())
        denied = self._auth(request)
        if denied:
            return denied
        if request.method == "POST" and self.rate_limited:
            self.rate_limited -= 1
            return self._limits(error(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}))
        if nsid == "com.atproto.identity.resolveHandle" and request.method == "GET":
            did = self.handles.get(request.query.get("handle", ""))
            if did is None:
                return error(400, {"error": "InvalidRequest", "message": "Unable to resolve handle"})
            return Reply(200, {"did": did})
        if nsid == "com.atproto.repo.uploadBlob" and request.method == "POST":
            cid = cid_of(request.body)
            self.blobs[cid] = request.body
            return self._limits(Reply(200, {"blob": {
                "$type": "blob", "ref": {"$link": cid},
                "mimeType": request.headers.get("content-type", "*/*"), "size": len(request.body)}}))
        if nsid == "com.atproto.repo.createRecord" and request.method == "POST":
            return self._create(request.json() or {})
        if nsid == "com.atproto.repo.getRecord" and request.method == "GET":
            q = request.query
            record = self.records.get((q.get("collection", ""), q.get("rkey", "")))
            if q.get("repo") not in (self.did, self.account) or record is None:
                return error(400, {"error": "RecordNotFound", "message": "Could not locate record: "
                                   f"at://{q.get('repo')}/{q.get('collection')}/{q.get('rkey')}"})
            return Reply(200, {"uri": record["uri"], "cid": record["cid"], "value": record["value"]})
        return error(501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"})

    def _create(self, body: dict[str, Any]) -> Reply:
        if body.get("repo") not in (self.did, self.account):
            return error(401, {"error": "AuthRequiredError", "message": "Authentication Required"})
        collection, record = body.get("collection", ""), body.get("record") or {}
        if record.get("$type") != collection:
            return error(400, {"error": "InvalidRequest",
                               "message": f"Invalid $type: expected {collection}, got {record.get('$type')}"})
        rkey = body.get("rkey") or self._tid()
        if collection == "app.bsky.feed.post" and (len(rkey) != 13 or any(c not in TID for c in rkey)):
            return error(400, {"error": "InvalidRequest", "message": f"Invalid record key: {rkey}"})
        if (collection, rkey) in self.records:
            return error(400, {"error": "InvalidRequest",
                               "message": f"Record already exists: at://{self.did}/{collection}/{rkey}"})
        for image in (record.get("embed") or {}).get("images", []):
            if image["image"]["ref"]["$link"] not in self.blobs:
                return error(400, {"error": "InvalidRequest", "message": "Could not find blob"})
        uri = f"at://{self.did}/{collection}/{rkey}"
        cid = cid_of(repr(record).encode())
        self.records[(collection, rkey)] = {"uri": uri, "cid": cid, "value": record}
        return self._limits(Reply(200, {"uri": uri, "cid": cid, "validationStatus": "valid",
                                        "commit": {"cid": cid_of(uri.encode()), "rev": self._tid()}}))

    def _tid(self) -> str:
        value = (int(time.time() * 1_000_000) << 10) | secrets.randbelow(1024)
        return "".join(TID[(value >> (5 * i)) & 31] for i in reversed(range(13)))
