"""youtube-stats: last week's channel analytics into data/analytics/ (what goals.md reads).

YouTube Analytics API v2 (`reports`, ids=channel==MINE) with an OAuth 2.0 access token from the
refresh-token flow: daily totals, and the top videos with their titles from the Data API.
Writes data/analytics/youtube.json (the newest week) and data/analytics/youtube/<end date>.json
(one per week, for comparing weeks). Arguments (optional): `days` (default 7), `end_date`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api

METRICS = "views,estimatedMinutesWatched,averageViewDuration,averageViewPercentage,subscribersGained"


def table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A resultTable's rows as dicts keyed by column name."""
    names = [h["name"] for h in report.get("columnHeaders", [])]
    return [dict(zip(names, row, strict=False)) for row in report.get("rows") or []]


def main() -> None:
    args = api.read_args()
    end = dt.date.fromisoformat(args["end_date"]) if args.get("end_date") else (
        dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    start = end - dt.timedelta(days=int(args.get("days", 7)) - 1)
    analytics = api.env("YOUTUBE_ANALYTICS_URL", "https://youtubeanalytics.googleapis.com/v2").rstrip("/")
    data_api = api.env("YOUTUBE_API_URL", "https://www.googleapis.com/youtube/v3").rstrip("/")
    google = api.Google()

    def report(**query: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"ids": "channel==MINE", "startDate": start.isoformat(),
                                    "endDate": end.isoformat(), **query})
        return table(google.call("GET", f"{analytics}/reports?{q}", "YouTube Analytics report"))

    try:
        days = report(metrics=METRICS, dimensions="day", sort="day")
        top = report(metrics=METRICS, dimensions="video", sort="-views", maxResults="10")
        if top:
            ids = ",".join(row["video"] for row in top)
            q = urllib.parse.urlencode({"part": "snippet", "id": ids})
            videos = google.call("GET", f"{data_api}/videos?{q}", "YouTube videos.list")
            titles = {v["id"]: v["snippet"]["title"] for v in videos.get("items", [])}
            for row in top:
                row["title"] = titles.get(row["video"], "")
    except api.HttpFailure as exc:
        api.fail(str(exc))
    views = sum(int(d.get("views", 0)) for d in days)
    minutes = sum(float(d.get("estimatedMinutesWatched", 0)) for d in days)
    pcts = sorted(float(v.get("averageViewPercentage", 0)) for v in top)
    summary = {"start_date": start.isoformat(), "end_date": end.isoformat(), "pulled_at": api.now_iso(),
               "totals": {"views": views, "estimated_minutes_watched": minutes,
                          "subscribers_gained": sum(int(d.get("subscribersGained", 0)) for d in days),
                          "median_view_percentage_top_videos": pcts[len(pcts) // 2] if pcts else None},
               "days": days, "top_videos": top}
    folder = api.data_dir() / "analytics"
    api.write_json(folder / "youtube.json", summary)
    api.write_json(folder / "youtube" / f"{end.isoformat()}.json", summary)
    print(json.dumps({"written": ["data/analytics/youtube.json",
                                  f"data/analytics/youtube/{end.isoformat()}.json"],
                      "totals": summary["totals"]}))


if __name__ == "__main__":
    main()
