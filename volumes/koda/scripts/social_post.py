"""social.post: one approved post to Bluesky and X (each network whose credentials are in .env).

Arguments (JSON on stdin): `text` (required), `link` (a URL, added to the text if missing),
`image` (a file under data/, e.g. data/drafts/<run>/card.png), `image_alt`, `networks`
(["bluesky", "x"]; default: every configured one).

Bluesky (AT Protocol): com.atproto.server.createSession with the handle and an app password,
com.atproto.repo.uploadBlob for the image, com.atproto.repo.createRecord of app.bsky.feed.post
with link, mention and tag facets (byte offsets in UTF-8). An expired access token (400
ExpiredToken) is refreshed once with com.atproto.server.refreshSession.
X (API v2): POST /2/media/upload and POST /2/tweets, signed with OAuth 1.0a user context.

Exactly once: the post's record key is chosen once per idempotency key and kept in
data/published/, and the record is looked up before it is created, so a retry after a crash
finds the post instead of making a second. X has no such key: the post id is recorded, and an
attempt that may have reached X without an answer is never repeated (the script says so).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api

URL = re.compile(r"https?://[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]")
MENTION = re.compile(r"(?:^|(?<=[\s(]))@([a-zA-Z0-9][a-zA-Z0-9.-]*\.[a-zA-Z]{2,})")
TAG = re.compile(r"(?:^|(?<=\s))#([^\d\s#][^\s#]*)")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".gif": "image/gif"}
TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"


def main() -> None:
    args = api.read_args()
    text = str(args.get("text") or "").strip()
    if not text:
        api.fail("social.post needs `text`", 2)
    link = args.get("link")
    if link and link not in text:
        text = f"{text} {link}"
    configured = [n for n, names in (("bluesky", ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD")),
                                     ("x", ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN",
                                            "X_ACCESS_TOKEN_SECRET"))) if api.has(*names)]
    networks = args.get("networks") or configured
    missing = [n for n in networks if n not in configured]
    if missing or not networks:
        api.fail(f"no credentials in .env for {', '.join(missing) or 'any network'}: run "
                 "`koda connect bluesky` or `koda connect x`", 2)
    image = api.data_file(args["image"]) if args.get("image") else None
    box = api.Outbox.open()
    results: dict[str, Any] = {}
    errors: list[str] = []
    for network in networks:
        try:
            if network == "bluesky":
                results[network] = post_bluesky(box, text, image, args.get("image_alt", ""))
            else:
                results[network] = post_x(box, text, image)
        except api.HttpFailure as exc:
            errors.append(f"{network}: {exc}")
    print(api.json.dumps(results))
    if errors:
        api.fail("\n".join(errors))
    for network, posted in results.items():
        if not posted.get("duplicate"):
            api.append_log("social", {"network": network, "at": api.now_iso(), "text": text,
                                      "url": posted.get("url"), "id": posted.get("id")})


# --- Bluesky ---------------------------------------------------------------------------------

class Bluesky:
    def __init__(self) -> None:
        self.base = api.env("BLUESKY_SERVICE_URL", "https://bsky.social").rstrip("/")
        resp = api.request("POST", self.xrpc("com.atproto.server.createSession"), json_body={
            "identifier": api.env("BLUESKY_HANDLE"), "password": api.env("BLUESKY_APP_PASSWORD")})
        if resp.status == 401:
            api.auth_failed("Bluesky", _xrpc_error(resp), "Make a new app password and run "
                            "`koda connect bluesky`.")
        session = api.expect(resp, "Bluesky createSession", 200)
        self.did, self.handle = session["did"], session["handle"]
        self.access, self.refresh = session["accessJwt"], session["refreshJwt"]

    def xrpc(self, nsid: str, **query: str) -> str:
        url = f"{self.base}/xrpc/{nsid}"
        return f"{url}?{urllib.parse.urlencode(query)}" if query else url

    def call(self, method: str, nsid: str, what: str, *, query: dict[str, str] | None = None,
             json_body: Any = None, data: bytes | None = None, content_type: str | None = None,
             ok: tuple[int, ...] = (200,)) -> api.Response:
        """One authenticated XRPC call; an expired access token is refreshed once."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.access}"}
            if content_type:
                headers["Content-Type"] = content_type
            resp = api.request(method, self.xrpc(nsid, **(query or {})), json_body=json_body,
                               data=data, headers=headers)
            if _xrpc_error_name(resp) in ("ExpiredToken", "InvalidToken") and attempt == 1:
                self._refresh_session()
                continue
            if resp.status == 401:
                api.auth_failed("Bluesky", _xrpc_error(resp), "Run `koda connect bluesky`.")
            if resp.status in ok:
                return resp
            if resp.status == 429:
                reset = resp.headers.get("ratelimit-reset", "")
                raise api.HttpFailure(f"Bluesky {what} (rate limited until epoch {reset})", resp)
            raise api.HttpFailure(f"Bluesky {what}", resp)
        raise AssertionError("unreachable")

    def _refresh_session(self) -> None:
        resp = api.request("POST", self.xrpc("com.atproto.server.refreshSession"),
                           headers={"Authorization": f"Bearer {self.refresh}"})
        if not resp.ok:
            api.auth_failed("Bluesky", _xrpc_error(resp), "Run `koda connect bluesky`.")
        session = resp.json()
        self.access, self.refresh = session["accessJwt"], session["refreshJwt"]


def _xrpc_error_name(resp: api.Response) -> str | None:
    body = resp.json()
    return body.get("error") if isinstance(body, dict) and not resp.ok else None


def _xrpc_error(resp: api.Response) -> str:
    body = resp.json()
    if isinstance(body, dict):
        return f"{body.get('error')}: {body.get('message')}"
    return f"HTTP {resp.status}"


def new_tid() -> str:
    """A record key in the TID format app.bsky.feed.post requires (µs clock and a random id)."""
    value = (int(time.time() * 1_000_000) << 10) | secrets.randbelow(1024)
    return "".join(TID_CHARS[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def facets(bsky: Bluesky, text: str) -> list[dict[str, Any]]:
    """Link, mention and tag facets; indices are byte offsets into the UTF-8 text."""
    def span(m: re.Match[str], group: int = 0) -> dict[str, int]:
        start = m.start(group) - (1 if group else 0)  # a mention or tag includes its @ or #
        return {"byteStart": len(text[:start].encode()), "byteEnd": len(text[:m.end(group)].encode())}

    out: list[dict[str, Any]] = []
    for m in URL.finditer(text):
        out.append({"index": span(m), "features": [
            {"$type": "app.bsky.richtext.facet#link", "uri": m.group(0)}]})
    for m in MENTION.finditer(text):
        resp = bsky.call("GET", "com.atproto.identity.resolveHandle", "resolveHandle",
                         query={"handle": m.group(1)}, ok=(200, 400))
        if resp.ok:  # an unknown handle stays plain text, as in the Bluesky app
            out.append({"index": span(m, 1), "features": [
                {"$type": "app.bsky.richtext.facet#mention", "did": resp.json()["did"]}]})
    for m in TAG.finditer(text):
        tag = m.group(1).rstrip(".,;:!?")
        if tag:
            end = m.start(1) + len(tag)
            out.append({"index": {"byteStart": len(text[:m.start(1) - 1].encode()),
                                  "byteEnd": len(text[:end].encode())},
                        "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}]})
    return out


def post_bluesky(box: api.Outbox, text: str, image: Any, alt: str) -> dict[str, Any]:
    done = box.get("bluesky")
    if done.get("uri"):
        return {**done, "duplicate": True}
    rkey = done.get("rkey") or new_tid()
    box.put("bluesky", rkey=rkey)  # before anything is created: a retry uses the same key
    bsky = Bluesky()
    found = bsky.call("GET", "com.atproto.repo.getRecord", "getRecord", ok=(200, 400), query={
        "repo": bsky.did, "collection": "app.bsky.feed.post", "rkey": rkey})
    if found.ok:
        posted = found.json()
    else:
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text,
                                  "createdAt": api.now_iso().replace("Z", ".000Z"), "langs": ["en"]}
        record_facets = facets(bsky, text)
        if record_facets:
            record["facets"] = record_facets
        if image is not None:
            ctype = IMAGE_TYPES.get(image.suffix.lower())
            if ctype is None:
                api.fail(f"{image.name}: Bluesky takes PNG, JPEG, WebP or GIF images", 2)
            blob = bsky.call("POST", "com.atproto.repo.uploadBlob", "uploadBlob",
                             data=image.read_bytes(), content_type=ctype).json()["blob"]
            record["embed"] = {"$type": "app.bsky.embed.images",
                               "images": [{"image": blob, "alt": alt or ""}]}
        posted = bsky.call("POST", "com.atproto.repo.createRecord", "createRecord", json_body={
            "repo": bsky.did, "collection": "app.bsky.feed.post", "rkey": rkey,
            "record": record}).json()
    url = f"https://bsky.app/profile/{bsky.handle}/post/{rkey}"
    box.put("bluesky", uri=posted["uri"], cid=posted.get("cid"), url=url, id=rkey)
    return box.get("bluesky")


# --- X ---------------------------------------------------------------------------------------

def post_x(box: api.Outbox, text: str, image: Any) -> dict[str, Any]:
    done = box.get("x")
    if done.get("id"):
        return {**done, "duplicate": True}
    if done.get("attempted"):
        api.fail("x: an earlier attempt under this key may have posted (no answer was recorded); "
                 "not posting again. Check the account, then propose the post again if it is missing.")
    base = api.env("X_API_URL", "https://api.x.com").rstrip("/")
    body: dict[str, Any] = {"text": text}
    if image is not None:
        media = image.read_bytes()
        data, ctype = api.multipart({"media_category": "tweet_image"},
                                    {"media": (image.name, media, "application/octet-stream")})
        resp = _x_call("POST", f"{base}/2/media/upload", data=data, content_type=ctype)
        body["media"] = {"media_ids": [api.expect(resp, "X media upload", 200, 201)["data"]["id"]]}
    box.put("x", attempted=api.now_iso())
    resp = _x_call("POST", f"{base}/2/tweets", json_body=body)
    if resp.status == 201:
        tweet = resp.json()["data"]
        box.put("x", id=tweet["id"], url=f"https://x.com/i/web/status/{tweet['id']}")
        return box.get("x")
    # Refused outright (not a lost answer): nothing was posted, so a later retry may post.
    box.put("x", attempted=None)
    if resp.status == 429:
        reset = resp.headers.get("x-rate-limit-reset", "")
        raise api.HttpFailure(f"X post (rate limited until epoch {reset})", resp)
    raise api.HttpFailure("X post", resp)


def _x_call(method: str, url: str, *, json_body: Any = None, data: bytes | None = None,
            content_type: str | None = None) -> api.Response:
    headers = {"Authorization": api.oauth1_header(
        method, url, api.env("X_API_KEY"), api.env("X_API_SECRET"), api.env("X_ACCESS_TOKEN"),
        api.env("X_ACCESS_TOKEN_SECRET"))}
    if content_type:
        headers["Content-Type"] = content_type
    resp = api.request(method, url, json_body=json_body, data=data, headers=headers)
    if resp.status == 401:
        api.auth_failed("X", resp.text(200), "Regenerate the access token and secret in the X "
                        "developer portal (read and write) and run `koda connect x`.")
    return resp


if __name__ == "__main__":
    main()
