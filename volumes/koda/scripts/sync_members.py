"""Sync new community members to Airtable. A starting point: fill in your bases and fields.

Exit code 77 means the site rejected our session or credentials; Koda then refreshes the
site's cookies and retries once.
"""

import json
import os
import sys

AUTH_FAILURE = 77

if not os.environ.get("AIRTABLE_TOKEN"):
    print("AIRTABLE_TOKEN is not set in .env", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"synced": 0, "note": "template script: connect your Skool and Airtable here"}))
