"""youtube-ready: list the channel's prepared uploads (private, not yet public) in data/videos/.

The creator uploads a video as private in YouTube Studio; this writes data/videos/ready.json
(newest first: video id, current title, upload time, whether it is scheduled) for the
publish-video skill, which drafts the title, description and tags and proposes video.publish.
YouTube Data API v3: channels.list(mine) for the uploads playlist, playlistItems.list, videos.list.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api


def main() -> None:
    api.read_args()
    base = api.env("YOUTUBE_API_URL", "https://www.googleapis.com/youtube/v3").rstrip("/")
    google = api.Google()

    def get(resource: str, what: str, **query: str) -> dict:
        return google.call("GET", f"{base}/{resource}?{urllib.parse.urlencode(query)}", what)

    try:
        channels = get("channels", "YouTube channels.list", part="contentDetails", mine="true")["items"]
        if not channels:
            api.fail("this Google account has no YouTube channel")
        uploads = channels[0]["contentDetails"]["relatedPlaylists"]["uploads"]
        items = get("playlistItems", "YouTube playlistItems.list", part="contentDetails",
                    playlistId=uploads, maxResults="25").get("items", [])
        ids = [i["contentDetails"]["videoId"] for i in items]
        videos = get("videos", "YouTube videos.list", part="snippet,status",
                     id=",".join(ids))["items"] if ids else []
    except api.HttpFailure as exc:
        api.fail(str(exc))
    ready = [{"video_id": v["id"], "title": v["snippet"]["title"],
              "description": v["snippet"].get("description", ""),
              "uploaded_at": v["snippet"].get("publishedAt"),
              "scheduled_for": v["status"].get("publishAt")}
             for v in videos if v["status"].get("privacyStatus") == "private"
             and v["status"].get("uploadStatus", "processed") in ("processed", "uploaded")]
    ready.sort(key=lambda r: r["uploaded_at"] or "", reverse=True)
    api.write_json(api.data_dir() / "videos" / "ready.json", {"checked_at": api.now_iso(), "videos": ready})
    print(json.dumps({"written": "data/videos/ready.json", "ready": [
        {"video_id": r["video_id"], "title": r["title"]} for r in ready]}))


if __name__ == "__main__":
    main()
