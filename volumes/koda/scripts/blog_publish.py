"""blog.publish: one approved blog post to WordPress and/or Ghost (each configured in .env).

Arguments (JSON on stdin): `title` (required), and the body as `content` (Markdown) or `draft`
(a Markdown file under data/, e.g. data/drafts/<run>/final.md, whose first `# ` line is the
title when `title` is missing); optional `excerpt`, `tags` (list of names), `slug`.

WordPress: REST API (`/wp-json/wp/v2/posts`) with an application password (HTTP Basic): the post
is created as a draft, then published. Ghost: Admin API (`/ghost/api/admin/posts/`) with a
short-lived HS256 token made from the Admin API key: created as a draft, then published.

Exactly once: each step's remote id is kept in data/published/ under the idempotency key, and a
draft that may have been created without an answer is found again by its slug before anything
is created, so a retry after a crash publishes the same post instead of a second one.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api

BULLET = re.compile(r"^\s*[-*]\s+")


def main() -> None:
    args = api.read_args()
    markdown = str(args.get("content") or "")
    if args.get("draft"):
        markdown = api.data_file(str(args["draft"])).read_text(encoding="utf-8")
    title = str(args.get("title") or "").strip()
    if not title:
        first = markdown.lstrip().splitlines()[0] if markdown.strip() else ""
        if first.startswith("# "):
            title, markdown = first[2:].strip(), markdown.lstrip().split("\n", 1)[-1]
    if not title or not markdown.strip():
        api.fail("blog.publish needs a `title` and the post as `content` or `draft`", 2)
    post = {"title": title, "html": to_html(markdown), "excerpt": str(args.get("excerpt") or ""),
            "slug": str(args.get("slug") or slugify(title)),
            "tags": [str(t) for t in args.get("tags") or []]}
    targets = [t for t, names in (("wordpress", ("WORDPRESS_URL", "WORDPRESS_USER",
                                                 "WORDPRESS_APP_PASSWORD")),
                                  ("ghost", ("GHOST_URL", "GHOST_ADMIN_API_KEY"))) if api.has(*names)]
    if not targets:
        api.fail("no blog in .env: run `koda connect wordpress` or `koda connect ghost`", 2)
    box = api.Outbox.open()
    results: dict[str, Any] = {}
    errors: list[str] = []
    for target in targets:
        try:
            results[target] = (wordpress if target == "wordpress" else ghost)(box, post)
        except api.HttpFailure as exc:
            errors.append(f"{target}: {exc}")
    print(json.dumps(results))
    if errors:
        api.fail("\n".join(errors))
    for target, done in results.items():
        if not done.get("duplicate"):
            api.append_log("blog", {"blog": target, "at": api.now_iso(), "title": title,
                                    "url": done.get("url"), "id": done.get("id")})


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80] or "post"


def to_html(markdown: str) -> str:
    """Headings, paragraphs, lists, links, bold and italics: what a drafted post uses."""
    def inline(text: str) -> str:
        text = html.escape(text, quote=False)
        text = re.sub(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", r'<a href="\2">\1</a>', text)
        text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"(?<!\*)\*([^*]+)\*(?!\*)", r"<em>\1</em>", text)

    out: list[str] = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = [ln.rstrip() for ln in block.splitlines() if ln.strip()]
        heading = re.match(r"^(#{1,6})\s+(.*)$", lines[0]) if len(lines) == 1 else None
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif all(BULLET.match(ln) for ln in lines):
            items = "".join(f"<li>{inline(BULLET.sub('', ln))}</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{inline(' '.join(ln.strip() for ln in lines))}</p>")
    return "\n".join(out)


# --- WordPress -------------------------------------------------------------------------------

def wordpress(box: api.Outbox, post: dict[str, Any]) -> dict[str, Any]:
    done = box.get("wordpress")
    if done.get("status") == "publish":
        return {**done, "duplicate": True}
    base = api.env("WORDPRESS_URL").rstrip("/") + "/wp-json/wp/v2"
    auth = {"Authorization": api.basic_auth(api.env("WORDPRESS_USER"), api.env("WORDPRESS_APP_PASSWORD"))}

    def call(method: str, path: str, what: str, body: Any = None) -> Any:
        resp = api.request(method, base + path, json_body=body, headers=auth)
        if resp.status == 401:
            api.auth_failed("WordPress", resp.text(200), "Make a new application password "
                            "(Users > Profile) and run `koda connect wordpress`.")
        return api.expect(resp, f"WordPress {what}", 200, 201)

    post_id = done.get("id")
    if post_id is None and done.get("attempted"):
        query = urllib.parse.urlencode({"slug": post["slug"], "status": "draft,publish",
                                        "context": "edit"})
        found = call("GET", f"/posts?{query}", "find the draft")
        post_id = found[0]["id"] if found else None
    if post_id is None:
        tag_ids = [wordpress_tag(call, name) for name in post["tags"]]
        box.put("wordpress", attempted=api.now_iso())
        created = call("POST", "/posts", "create the draft", {
            "title": post["title"], "content": post["html"], "excerpt": post["excerpt"],
            "slug": post["slug"], "status": "draft", "tags": tag_ids})
        post_id = created["id"]
    box.put("wordpress", id=post_id, status="draft")
    published = call("POST", f"/posts/{post_id}", "publish", {"status": "publish"})
    box.put("wordpress", status=published["status"], url=published.get("link"))
    return box.get("wordpress")


def wordpress_tag(call: Any, name: str) -> int:
    found = call("GET", "/tags?" + urllib.parse.urlencode({"search": name}), "find a tag")
    for tag in found:
        if tag["name"].lower() == name.lower():
            return int(tag["id"])
    return int(call("POST", "/tags", "create a tag", {"name": name})["id"])


# --- Ghost -----------------------------------------------------------------------------------

def ghost(box: api.Outbox, post: dict[str, Any]) -> dict[str, Any]:
    done = box.get("ghost")
    if done.get("status") == "published":
        return {**done, "duplicate": True}
    base = api.env("GHOST_URL").rstrip("/") + "/ghost/api/admin"
    key = api.env("GHOST_ADMIN_API_KEY")

    def call(method: str, path: str, what: str, body: Any = None) -> Any:
        # A fresh token per call: Ghost refuses one older than five minutes.
        headers = {"Authorization": f"Ghost {api.ghost_admin_token(key)}", "Accept-Version": "v5.0"}
        resp = api.request(method, base + path, json_body=body, headers=headers)
        if resp.status == 401:
            api.auth_failed("Ghost", resp.text(200), "Copy the Admin API key of a custom "
                            "integration (Settings > Integrations) and run `koda connect ghost`.")
        return api.expect(resp, f"Ghost {what}", 200, 201)

    current = None
    if done.get("id"):
        current = call("GET", f"/posts/{done['id']}/", "read the draft")["posts"][0]
    elif done.get("attempted"):
        query = urllib.parse.urlencode({"filter": f"slug:{post['slug']}"})
        found = call("GET", f"/posts/?{query}", "find the draft")["posts"]
        current = found[0] if found else None
    if current is None:
        box.put("ghost", attempted=api.now_iso())
        current = call("POST", "/posts/?source=html", "create the draft", {"posts": [{
            "title": post["title"], "html": post["html"], "slug": post["slug"],
            "custom_excerpt": post["excerpt"][:300] or None, "status": "draft",
            "tags": [{"name": t} for t in post["tags"]]}]})["posts"][0]
    box.put("ghost", id=current["id"], status=current["status"])
    if current["status"] != "published":
        # Ghost needs the post's updated_at back, so a concurrent edit is not overwritten.
        current = call("PUT", f"/posts/{current['id']}/", "publish", {"posts": [{
            "status": "published", "updated_at": current["updated_at"]}]})["posts"][0]
    box.put("ghost", status=current["status"], url=current.get("url"))
    return box.get("ghost")


if __name__ == "__main__":
    main()
