"""The creator's community site (a Skool-like members area): the scraper tests' members-only site
with a members page listing people with their e-mail and join date, as the sync reads it."""

from __future__ import annotations

import html
from typing import Any

from tests.scraper.testsite import TestSite


def member_list(count: int) -> list[dict[str, str]]:
    return [{"name": f"Member {i:02d}", "email": f"member{i:02d}@example.org",
             "joined": f"2026-11-{1 + i % 28:02d}"} for i in range(count)]


class FakeCommunity(TestSite):
    __test__ = False

    def __init__(self, email: str, password: str, members: list[dict[str, str]]) -> None:
        super().__init__(email, password)
        self.set_members(members)

    def __enter__(self) -> FakeCommunity:
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)

    def set_members(self, members: list[dict[str, str]]) -> None:
        items = "".join(
            f'<li class="member" data-email="{html.escape(m["email"])}" data-joined="{m["joined"]}">'
            f'<span class="name">{html.escape(m["name"])}</span></li>' for m in members)
        page = ("<!doctype html><html><head><title>Members</title></head><body>"
                f'<h1>Members</h1><ul id="members">{items}</ul><p id="who">Signed in as {{email}}</p>'
                "</body></html>")
        self.members_page = page.replace("{", "{{").replace("}", "}}").replace("{{email}}", "{email}")
