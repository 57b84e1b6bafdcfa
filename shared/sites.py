"""The sites the scraper knows (`sites.json` in the home): where to start, how to recognise the
login wall, and how to log in again.

A login is either a `recipe` (fields filled from `.env` entries named here, a submit button) the
scraper follows itself, or a `skill` a person or the agent follows; with only a skill, a login
wall marks the site as needing a human at once. `$comment` keys are allowed anywhere, so the
file can explain itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from .configfile import load_config

SITE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    comment: str | None = Field(default=None, alias="$comment")


class LoginWall(_Model):
    """How a page shows that the session is gone; any one match is a wall."""

    url_pattern: str | None = Field(default=None, description="Regex searched in the final URL.")
    selector: str | None = Field(default=None, description="CSS selector present on the wall.")
    status: list[int] = Field(default_factory=list, description="HTTP statuses that mean a wall.")

    @field_validator("url_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _something(self) -> LoginWall:
        if not (self.url_pattern or self.selector or self.status):
            raise ValueError("give at least one of url_pattern, selector, status")
        return self

    def matches(self, url: str, status: int | None, has_selector: bool) -> bool:
        return bool(
            (self.url_pattern and re.search(self.url_pattern, url))
            or (status is not None and status in self.status)
            or has_selector
        )


class LoginRecipe(_Model):
    """Log in by filling a form: CSS selector -> the `.env` entry whose value goes there."""

    url: str = Field(description="The login page.")
    fields: dict[str, str] = Field(min_length=1, description="Selector -> .env name.")
    submit: str = Field(description="Selector of the button that sends the form.")

    @field_validator("fields")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            if not re.match(ENV_NAME, name):
                # Never echo it: someone may have pasted the password itself here.
                raise ValueError("each value must be the NAME of a .env entry (letters, digits, _), "
                                 "never the credential itself")
        return value


class Login(_Model):
    recipe: LoginRecipe | None = None
    skill: str | None = Field(default=None, description="A skill in skills/ for a person or agent.")

    @model_validator(mode="after")
    def _one(self) -> Login:
        if not (self.recipe or self.skill):
            raise ValueError("give a recipe, a skill, or both")
        return self


class Site(_Model):
    start_url: str = Field(description="The page a job opens when it names no URL.")
    login_wall: LoginWall
    login: Login


class SitesFile(_Model):
    schema_ref: str | None = Field(default=None, alias="$schema")
    #: Names are subject tokens and file names: lowercase letters, digits, - and _.
    sites: dict[Annotated[str, StringConstraints(pattern=SITE_NAME)], Site] = Field(
        default_factory=dict)


def load_sites(path: Path) -> SitesFile:
    """The sites file; absent means no sites. Raises `ConfigError` naming file, line and field."""
    if not path.exists():
        return SitesFile()
    return load_config(path, SitesFile)
