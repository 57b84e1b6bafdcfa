"""A fake WordPress REST API (`/wp-json/wp/v2/posts`, `/tags`) behind an application password
(HTTP Basic, spaces in the password ignored as WordPress does), with its `{code, message, data}`
errors."""

from __future__ import annotations

import base64
from typing import Any

from .base import FakeService, Reply, Request, error

API = "/wp-json/wp/v2"
BAD_PASSWORD = {"code": "incorrect_password",
                "message": "The provided password is an invalid application password.",
                "data": {"status": 401}}


class FakeWordPress(FakeService):
    def __init__(self, user: str, app_password: str) -> None:
        super().__init__()
        self.user, self.app_password = user, app_password.replace(" ", "")
        self.posts: dict[int, dict[str, Any]] = {}
        self.tags: dict[int, str] = {}
        self.next_id = 100

    def published(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.posts.values() if p["status"] == "publish"]

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.user and password.replace(" ", "") == self.app_password

    def _view(self, post: dict[str, Any], edit: bool) -> dict[str, Any]:
        out = {"id": post["id"], "date": post["date"], "slug": post["slug"], "status": post["status"],
               "type": "post", "link": f"{self.url}/?p={post['id']}" if post["status"] != "publish"
               else f"{self.url}/{post['slug']}/",
               "title": {"rendered": post["title"]},
               "content": {"rendered": post["content"], "protected": False},
               "excerpt": {"rendered": post["excerpt"], "protected": False}, "tags": post["tags"]}
        if edit:
            out["title"]["raw"], out["content"]["raw"] = post["title"], post["content"]
        return out

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(API):
            return error(404, {"code": "rest_no_route", "message": "No route was found matching the URL "
                               "and request method.", "data": {"status": 404}})
        path = request.path[len(API):].rstrip("/")
        if not self._authorised(request):
            if request.headers.get("authorization"):
                return error(401, BAD_PASSWORD)
            if request.method != "GET":
                return error(401, {"code": "rest_cannot_create", "message": "Sorry, you are not allowed "
                                   "to create posts as this user.", "data": {"status": 401}})
        body = request.json() if request.body else {}
        if path == "/users/me" and request.method == "GET":
            if not self._authorised(request):
                return error(401, {"code": "rest_not_logged_in",
                                   "message": "You are not currently logged in.",
                                   "data": {"status": 401}})
            return Reply(200, {"id": 1, "name": "The Creator", "slug": self.user,
                               "capabilities": {"edit_posts": True, "publish_posts": True}})
        if path == "/posts" and request.method == "GET":
            statuses = request.query.get("status", "publish").split(",")
            found = [p for p in self.posts.values() if p["status"] in statuses
                     and request.query.get("slug", p["slug"]) == p["slug"]]
            return Reply(200, [self._view(p, request.query.get("context") == "edit") for p in found],
                         {"X-WP-Total": str(len(found)), "X-WP-TotalPages": "1"})
        if path == "/posts" and request.method == "POST":
            if not body.get("title") and not body.get("content"):
                return error(400, {"code": "empty_content",
                                   "message": "Content, title, and excerpt are empty.",
                                   "data": {"status": 400}})
            self.next_id += 1
            slug = body.get("slug") or str(body["title"]).lower().replace(" ", "-")
            while any(p["slug"] == slug for p in self.posts.values()):
                slug += "-2"  # WordPress makes slugs unique the same way
            post = {"id": self.next_id, "date": "2026-12-02T09:00:00", "slug": slug,
                    "status": body.get("status", "draft"), "title": body.get("title", ""),
                    "content": body.get("content", ""), "excerpt": body.get("excerpt", ""),
                    "tags": body.get("tags", [])}
            self.posts[post["id"]] = post
            return Reply(201, self._view(post, True))
        if path.startswith("/posts/") and path[7:].isdigit():
            one = self.posts.get(int(path[7:]))
            if one is None:
                return error(404, {"code": "rest_post_invalid_id", "message": "Invalid post ID.",
                                   "data": {"status": 404}})
            post = one
            if request.method in ("POST", "PUT", "PATCH"):
                for key in ("status", "title", "content", "excerpt", "slug", "tags"):
                    if key in body:
                        post[key] = body[key]
            return Reply(200, self._view(post, True))
        if path == "/tags" and request.method == "GET":
            term = request.query.get("search", "").lower()
            return Reply(200, [{"id": i, "name": n, "slug": n.lower()} for i, n in self.tags.items()
                               if term in n.lower()])
        if path == "/tags" and request.method == "POST":
            if any(n.lower() == str(body.get("name", "")).lower() for n in self.tags.values()):
                return error(400, {"code": "term_exists", "message": "A term with the name provided "
                                   "already exists with this parent.", "data": {"status": 400}})
            self.next_id += 1
            self.tags[self.next_id] = str(body.get("name"))
            return Reply(201, {"id": self.next_id, "name": body.get("name"),
                               "slug": str(body.get("name")).lower()})
        return error(404, {"code": "rest_no_route", "message": "No route was found matching the URL and "
                           "request method.", "data": {"status": 404}})
