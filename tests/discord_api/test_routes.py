"""The fake Discord serves only routes Discord's OpenAPI description has, and the trimmed copy
of that description is what trim_spec.py makes of it."""

from __future__ import annotations

from tests.discord_api.spec import spec
from tests.discord_api.trim_spec import ROUTES as TRIMMED
from tests.fake_discord import ROUTES


def test_every_route_of_the_fake_is_an_operation_of_discords_api() -> None:
    paths = spec()["paths"]
    missing = [f"{m} {t}" for m, t in ROUTES if m.lower() not in paths.get(t, {})]
    assert not missing, f"not in Discord's OpenAPI description: {missing}"


def test_the_trimmed_description_covers_exactly_the_fakes_routes() -> None:
    assert {(m.upper(), t) for t, ms in TRIMMED.items() for m in ms} == set(ROUTES)
    assert "discord-api-spec@" in spec()["info"]["x-source"]
