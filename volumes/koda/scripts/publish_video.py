"""video.publish: make an approved, prepared (private) upload public with its title,
description and tags. Runs only for an approved action, with the approval's arguments on stdin:
`video_id`, `title`, `description`, `tags` (list), optional `category_id`.

YouTube Data API v3: videos.list(part=snippet,status) to read the upload, then videos.update with
the new snippet and privacyStatus public. Setting a state is idempotent; the result is also kept
in data/published/ under the idempotency key, so a retry reports the same publish.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api


def main() -> None:
    args = api.read_args()
    video_id = str(args.get("video_id") or "")
    title = str(args.get("title") or "").strip()
    if not video_id or not title:
        api.fail("video.publish needs `video_id` and `title`", 2)
    if len(title) > 100:
        api.fail(f"title is {len(title)} characters; YouTube allows 100", 2)
    box = api.Outbox.open()
    if box.get("youtube").get("privacy") == "public":
        print(json.dumps({**box.get("youtube"), "duplicate": True}))
        return
    base = api.env("YOUTUBE_API_URL", "https://www.googleapis.com/youtube/v3").rstrip("/")
    google = api.Google()
    try:
        q = urllib.parse.urlencode({"part": "snippet,status", "id": video_id})
        items = google.call("GET", f"{base}/videos?{q}", "YouTube videos.list")["items"]
        if not items:
            api.fail(f"no video {video_id} on this channel")
        current = items[0]
        snippet = {"title": title, "description": str(args.get("description") or ""),
                   "tags": [str(t) for t in args.get("tags") or []][:500],
                   "categoryId": str(args.get("category_id") or current["snippet"].get("categoryId", "22"))}
        status = {**{k: v for k, v in current["status"].items()
                     if k in ("embeddable", "license", "publicStatsViewable", "selfDeclaredMadeForKids")},
                  "privacyStatus": "public"}
        q = urllib.parse.urlencode({"part": "snippet,status"})
        done = google.call("PUT", f"{base}/videos?{q}", "YouTube videos.update",
                           {"id": video_id, "snippet": snippet, "status": status})
    except api.HttpFailure as exc:
        api.fail(str(exc))
    box.put("youtube", id=video_id, privacy=done["status"]["privacyStatus"],
            url=f"https://www.youtube.com/watch?v={video_id}", title=done["snippet"]["title"])
    api.append_log("videos", {"at": api.now_iso(), "id": video_id, "title": title,
                              "url": f"https://www.youtube.com/watch?v={video_id}"})
    print(json.dumps(box.get("youtube")))


if __name__ == "__main__":
    main()
