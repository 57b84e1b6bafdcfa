"""A fake Google: the OAuth 2.0 token endpoint (refresh-token grant), the YouTube Data API v3
(channels, playlistItems, videos list and update) and the YouTube Analytics API v2 (reports),
with Google's error bodies (`invalid_grant`; `{"error": {"code", "message", "errors", "status"}}`)
and access tokens that a test can expire so the client's 401 -> refresh -> retry path runs.

Paths: token endpoint `/token`, Data API under `/youtube/v3`, Analytics under `/v2`.
"""

from __future__ import annotations

import secrets
from typing import Any

from .base import FakeService, Reply, Request, error

UNAUTHENTICATED = {"error": {
    "code": 401,
    "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
               "cookie or other valid authentication credential. See "
               "https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                "location": "Authorization", "locationType": "header"}],
    "status": "UNAUTHENTICATED"}}


class FakeGoogle(FakeService):
    def __init__(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        super().__init__()
        self.client = (client_id, client_secret)
        self.refresh_token = refresh_token
        self.tokens: dict[str, bool] = {}
        self.refreshes = 0
        self.expire_next = 0  # tokens issued while this is positive are already expired
        self.videos: dict[str, dict[str, Any]] = {}
        self.daily_views = [120, 180, 90, 300, 240, 210, 160]

    def add_video(self, video_id: str, title: str, privacy: str = "private") -> None:
        self.videos[video_id] = {"kind": "youtube#video", "id": video_id, "etag": secrets.token_hex(8),
                                 "snippet": {"title": title, "description": "", "tags": [],
                                             "categoryId": "28", "publishedAt": "2026-11-30T10:00:00Z",
                                             "channelId": "UCfake"},
                                 "status": {"privacyStatus": privacy, "uploadStatus": "processed",
                                            "embeddable": True, "license": "youtube",
                                            "publicStatsViewable": True}}

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = dict.fromkeys(self.tokens, False)

    def handle(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self._token(request.form())
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not self.tokens.get(header[7:]):
            return error(401, UNAUTHENTICATED, **{"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if request.path.startswith("/youtube/v3/"):
            return self._data(request, request.path[len("/youtube/v3/"):])
        if request.path == "/v2/reports" and request.method == "GET":
            return self._report(request.query)
        return error(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})

    def _token(self, form: dict[str, str]) -> Reply:
        if (form.get("client_id"), form.get("client_secret")) != self.client:
            return error(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return error(400, {"error": "invalid_grant",
                               "error_description": "Token has been expired or revoked."})
        token = "ya29." + secrets.token_urlsafe(24)
        self.tokens[token] = self.expire_next <= 0
        self.expire_next -= 1
        self.refreshes += 1
        return Reply(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                           "scope": "https://www.googleapis.com/auth/youtube "
                                    "https://www.googleapis.com/auth/yt-analytics.readonly"})

    def _data(self, request: Request, resource: str) -> Reply:
        q = request.query
        if resource == "channels" and q.get("mine") == "true":
            return Reply(200, {"kind": "youtube#channelListResponse", "items": [{
                "kind": "youtube#channel", "id": "UCfake", "snippet": {"title": "The Creator"},
                "contentDetails": {"relatedPlaylists": {"uploads": "UUfake"}}}]})
        if resource == "playlistItems" and q.get("playlistId") == "UUfake":
            return Reply(200, {"kind": "youtube#playlistItemListResponse", "items": [
                {"kind": "youtube#playlistItem", "contentDetails": {"videoId": v}} for v in self.videos]})
        if resource == "videos" and request.method == "GET":
            ids = q.get("id", "").split(",")
            return Reply(200, {"kind": "youtube#videoListResponse",
                               "items": [self.videos[i] for i in ids if i in self.videos]})
        if resource == "videos" and request.method == "PUT":
            return self._update(request)
        return error(400, {"error": {"code": 400, "message": "Bad request", "status": "INVALID_ARGUMENT"}})

    def _update(self, request: Request) -> Reply:
        body = request.json() or {}
        parts = set(request.query.get("part", "").split(","))
        video = self.videos.get(body.get("id", ""))
        if video is None:
            return error(404, {"error": {"code": 404, "message": "The video that you are trying to update "
                                         "cannot be found.", "errors": [{"reason": "videoNotFound",
                                         "domain": "youtube.video", "message": "Not found"}]}})
        if "snippet" in parts:
            snippet = body.get("snippet") or {}
            if not snippet.get("title") or not snippet.get("categoryId"):
                return error(400, {"error": {"code": 400, "message": "The request metadata does not "
                                             "specify a valid video title or category.",
                                             "errors": [{"reason": "invalidCategoryId"}]}})
            video["snippet"].update({k: snippet[k] for k in ("title", "description", "tags", "categoryId")
                                     if k in snippet})
        if "status" in parts:
            video["status"].update(body.get("status") or {})
        return Reply(200, video)

    def _report(self, q: dict[str, str]) -> Reply:
        if q.get("ids") != "channel==MINE" or not q.get("startDate") or not q.get("endDate"):
            return error(400, {"error": {"code": 400, "message": "Required parameter missing",
                                         "status": "INVALID_ARGUMENT"}})
        metrics = q.get("metrics", "").split(",")
        dim = q.get("dimensions", "")
        headers = [{"name": dim, "columnType": "DIMENSION", "dataType": "STRING"}] + [
            {"name": m, "columnType": "METRIC", "dataType": "INTEGER"} for m in metrics]
        if dim == "day":
            import datetime as dt
            start = dt.date.fromisoformat(q["startDate"])
            rows = [[(start + dt.timedelta(days=i)).isoformat(), *[self.daily_views[i % 7] if m == "views"
                     else 40 if m == "averageViewPercentage" else 3 for m in metrics]] for i in range(7)]
        else:
            rows = [[v, *[500 if m == "views" else 45 if m == "averageViewPercentage" else 5
                          for m in metrics]]
                    for v in self.videos]
        return Reply(200, {"kind": "youtubeAnalytics#resultTable", "columnHeaders": headers, "rows": rows})
