"""Pull YouTube channel analytics into data/analytics/youtube.json. A starting point."""

import json
import os
import sys

if not os.environ.get("YOUTUBE_API_KEY"):
    print("YOUTUBE_API_KEY is not set in .env", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"videos": [], "note": "template script: call the YouTube Analytics API here"}))
