"""Publish an approved video on YouTube. A starting point: connect the YouTube Data API here.

The actions service runs this only for an approved `video.publish` action, with the approval's
arguments as JSON on stdin and YOUTUBE_API_KEY (nothing else from .env) in the environment.
KODA_IDEMPOTENCY_KEY is the same for every attempt at one approval: send it to the API where it
accepts one, so a retry never publishes twice. Exit 77 if the API rejects the credentials.
"""

import json
import os
import sys

args = json.load(sys.stdin)
if not os.environ.get("YOUTUBE_API_KEY"):
    print("YOUTUBE_API_KEY is not set in .env", file=sys.stderr)
    sys.exit(2)
print("template script: connect the YouTube Data API in scripts/publish_video.py", file=sys.stderr)
print(json.dumps({"published": False, "video_id": args.get("video_id")}))
sys.exit(2)
