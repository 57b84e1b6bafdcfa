"""A fake Airtable Web API: `PATCH /v0/{base}/{table}` with `performUpsert` (at most ten records a
request, merge fields required in each), personal access tokens, Airtable's error bodies, and its
rate limit of five requests a second per base answered with 429."""

from __future__ import annotations

import secrets
import time
import urllib.parse
from collections import deque
from typing import Any

from .base import FakeService, Reply, Request, error

RATE_LIMIT = 5  # requests per second per base


class FakeAirtable(FakeService):
    def __init__(self, token: str, base_id: str, table: str) -> None:
        super().__init__()
        self.token, self.base_id, self.table = token, base_id, table
        self.rows: dict[str, dict[str, Any]] = {}  # record id -> fields
        self.recent: deque[float] = deque()
        self.rate_limited = 0  # 429s answered
        self.upserts = 0
        self.spent = False

    def exhaust(self) -> None:
        """The next request finds the base's limit spent, as when another client used it."""
        with self.lock:
            self.spent = True

    def rows_by(self, field: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {str(f.get(field)): f for f in self.rows.values()}

    def handle(self, request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return error(401, {"error": {"type": "AUTHENTICATION_REQUIRED",
                                         "message": "Authentication required"}})
        now = time.monotonic()
        while self.recent and now - self.recent[0] >= 1.0:
            self.recent.popleft()
        self.recent.append(now)
        if len(self.recent) > RATE_LIMIT or self.spent:
            self.spent = False
            self.rate_limited += 1
            return error(429, {"errors": [{"error": "RATE_LIMIT_REACHED",
                                           "message": "Rate limit exceeded. Please try again later"}]})
        if request.path == "/v0/meta/whoami":
            return Reply(200, {"id": "usrCreator000001",
                               "scopes": ["data.records:read", "data.records:write"]})
        parts = request.path.split("/")
        if len(parts) != 4 or parts[1] != "v0" or parts[2] != self.base_id:
            return error(404, {"error": "NOT_FOUND"})
        if urllib.parse.unquote(parts[3]) != self.table:
            return error(404, {"error": {"type": "TABLE_NOT_FOUND", "message": "Could not find table "
                                         f"{urllib.parse.unquote(parts[3])} in application {self.base_id}"}})
        if request.method == "GET":
            first = list(self.rows.items())[:int(request.query.get("maxRecords", 100))]
            return Reply(200, {"records": [{"id": rid, "createdTime": "2026-12-02T09:00:00.000Z", "fields": f}
                                           for rid, f in first]})
        if request.method != "PATCH":
            return error(404, {"error": "NOT_FOUND"})
        return self._upsert(request.json() or {})

    def _upsert(self, body: dict[str, Any]) -> Reply:
        records = body.get("records") or []
        merge = (body.get("performUpsert") or {}).get("fieldsToMergeOn") or []
        if not merge or not 1 <= len(records) <= 10:
            return error(422, {"error": {"type": "INVALID_REQUEST_UNKNOWN",
                                         "message": "Invalid request: parameter validation failed. Check "
                                         "your request data."}})
        out, created, updated = [], [], []
        for record in records:
            fields = record.get("fields") or {}
            if any(f not in fields for f in merge):
                return error(422, {"error": {"type": "INVALID_VALUE_FOR_COLUMN",
                                             "message": f"Field(s) {merge} required for upsert"}})
            match = next((rid for rid, row in self.rows.items()
                          if all(row.get(f) == fields[f] for f in merge)), None)
            if match is None:
                match = "rec" + secrets.token_hex(7)
                self.rows[match] = {}
                created.append(match)
            else:
                updated.append(match)
            self.rows[match].update(fields)
            out.append({"id": match, "createdTime": "2026-12-02T09:00:00.000Z", "fields": self.rows[match]})
        self.upserts += 1
        return Reply(200, {"records": out, "createdRecords": created, "updatedRecords": updated})
