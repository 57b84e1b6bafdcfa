"""A page too large for one message still gets an answer: cut, and said to be cut."""

from __future__ import annotations

from koda.services.scraper.service import MAX_RESULT_BYTES, fit
from koda.shared.messages import ScrapeResult


def test_a_huge_page_is_cut_to_fit_one_message() -> None:
    huge = ScrapeResult(site="s", job_id="j", ok=True, text="字" * 600_000,
                        extracted={"all": "x" * 1_500_000, "title": "Members"})
    cut = fit(huge)
    assert len(cut.to_bytes()) <= MAX_RESULT_BYTES
    assert cut.ok and cut.extracted["title"] == "Members"
    assert cut.text.startswith("字") and cut.text.endswith("[... cut to fit one message ...]")
    assert cut.extracted["all"].endswith("[... cut ...]")
    small = ScrapeResult(site="s", job_id="j", ok=True, text="hello")
    assert fit(small) == small
