"""members sync: read the community's members page and upsert every member into Airtable.

The page is read with the cookies the scraper keeps for the manifest's `site` (KODA_COOKIES, a
Playwright storage state). A login wall (a redirect to a login page, 401/403, or a password
field) exits 77: the actions service then has the scraper log in again through the site's login
recipe and runs this once more. Each element with the class `member` is one member: its text
is the Name, and its `data-*` attributes are fields (`data-email` -> Email). A `rel="next"`
link is followed to the next page.

Airtable: PATCH /v0/{base}/{table} with `performUpsert` on AIRTABLE_KEY_FIELD (default Email),
ten records a request (Airtable's maximum) and four requests a second (under its limit of five per
base); a 429 waits AIRTABLE_RATE_LIMIT_WAIT seconds (Airtable asks for 30) and retries. An upsert
on a key is idempotent, so a retry or a second run changes nothing twice.
Writes the count to data/analytics/members.json (one entry a day), which goals.md reads.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
from html.parser import HTMLParser
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import koda_api as api

BATCH = 10
MIN_INTERVAL = 0.25  # seconds between Airtable requests: under its 5 a second, with room for jitter
MAX_PAGES = 50


class MembersPage(HTMLParser):
    """Members (`class="member"` elements), the next page's link, and whether it is a login form."""

    def __init__(self) -> None:
        super().__init__()
        self.members: list[dict[str, str]] = []
        self.next_url: str | None = None
        self.login_form = False
        self._open: list[tuple[str, dict[str, str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type") == "password":
            self.login_form = True
        if tag in ("a", "link") and "next" in a.get("rel", "").split() and a.get("href"):
            self.next_url = a["href"]
        if "member" in a.get("class", "").split():
            self._open.append((tag, a, []))
        elif self._open and self._open[-1][0] == tag:
            self._open.append((tag, {}, self._open[-1][2]))  # nested same tag: shares the text

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            _, a, text = self._open.pop()
            if "member" in a.get("class", "").split():
                member = {"Name": " ".join("".join(text).split())}
                for k, v in a.items():
                    if k.startswith("data-") and v:
                        member[k[5:].replace("-", " ").title()] = v.strip()
                self.members.append(member)

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][2].append(data)


def cookie_header(url: str) -> str:
    """The storage state's cookies for this URL's host and path."""
    state = api.read_json(api.Path(api.env("KODA_COOKIES")), {}) if os.environ.get("KODA_COOKIES") else {}
    parts = urllib.parse.urlsplit(url)
    host, path = parts.hostname or "", parts.path or "/"
    jar = []
    for c in state.get("cookies", []) if isinstance(state, dict) else []:
        domain = str(c.get("domain", "")).lstrip(".")
        if (host == domain or host.endswith("." + domain)) and path.startswith(c.get("path", "/")):
            jar.append(f"{c['name']}={c['value']}")
    return "; ".join(jar)


def read_members(url: str) -> list[dict[str, str]]:
    members: list[dict[str, str]] = []
    for _ in range(MAX_PAGES):
        resp = api.request("GET", url, headers={"Cookie": cookie_header(url), "Accept": "text/html"},
                           follow_redirects=False)
        location = resp.headers.get("location", "")
        if resp.status in (401, 403) or (300 <= resp.status < 400 and "login" in location.lower()):
            api.fail(f"session expired: the members page answered {resp.status} "
                     f"{'-> ' + location if location else ''}", api.AUTH_FAILURE)
        if not resp.ok:
            raise api.HttpFailure("reading the members page", resp)
        page = MembersPage()
        page.feed(resp.body.decode("utf-8", "replace"))
        if page.login_form and not page.members:
            api.fail("session expired: the members page shows a login form", api.AUTH_FAILURE)
        members += page.members
        if not page.next_url:
            break
        url = urllib.parse.urljoin(url, page.next_url)
    return members


class Airtable:
    def __init__(self) -> None:
        base = api.env("AIRTABLE_API_URL", "https://api.airtable.com").rstrip("/")
        table = urllib.parse.quote(api.env("AIRTABLE_MEMBERS_TABLE", "Members"), safe="")
        self.url = f"{base}/v0/{api.env('AIRTABLE_BASE_ID')}/{table}"
        self.token = api.env("AIRTABLE_TOKEN")
        self.wait_429 = float(api.env("AIRTABLE_RATE_LIMIT_WAIT", "30"))
        self._last = 0.0

    def upsert(self, key: str, records: list[dict[str, str]]) -> tuple[int, int]:
        created = updated = 0
        for i in range(0, len(records), BATCH):
            body = {"performUpsert": {"fieldsToMergeOn": [key]}, "typecast": True,
                    "records": [{"fields": r} for r in records[i:i + BATCH]]}
            result = self._patch(body)
            created += len(result.get("createdRecords", []))
            updated += len(result.get("updatedRecords", []))
        return created, updated

    def _patch(self, body: dict[str, Any]) -> dict[str, Any]:
        for _ in range(4):
            time.sleep(max(0.0, self._last + MIN_INTERVAL - time.monotonic()))
            self._last = time.monotonic()
            resp = api.request("PATCH", self.url, json_body=body,
                               headers={"Authorization": f"Bearer {self.token}"})
            if resp.status == 429:
                time.sleep(self.wait_429)
                continue
            if resp.status in (401, 403):
                # Not exit 77: a new community login would not help; a person must fix the token.
                api.fail(f"Airtable refused AIRTABLE_TOKEN (HTTP {resp.status}: {resp.text(200)}); "
                         "make a token with data.records:write on the base and run "
                         "`koda connect airtable`")
            result: dict[str, Any] = api.expect(resp, "Airtable upsert", 200)
            return result
        raise api.HttpFailure("Airtable upsert (still rate limited after 3 waits)", resp)


def main() -> None:
    args = api.read_args()
    url = args.get("url") or api.env("COMMUNITY_MEMBERS_URL")
    key = api.env("AIRTABLE_KEY_FIELD", "Email")
    members = read_members(url)
    keyed = {m[key]: m for m in members if m.get(key)}  # the page may list someone twice
    try:
        created, updated = Airtable().upsert(key, list(keyed.values()))
    except api.HttpFailure as exc:
        api.fail(str(exc))
    path = api.data_dir() / "analytics" / "members.json"
    doc = api.read_json(path, {})
    today = api.now_iso()[:10]
    history = [h for h in doc.get("history", []) if h.get("date") != today]
    history.append({"date": today, "count": len(members)})
    api.write_json(path, {"count": len(members), "synced_at": api.now_iso(),
                          "history": history[-400:]})
    print(json.dumps({"members": len(members), "synced": len(keyed), "created": created,
                      "updated": updated, "skipped_without_key": len(members) - len(keyed)}))


if __name__ == "__main__":
    main()
