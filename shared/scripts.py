"""The helper scripts manifest (`scripts/manifest.json`): what each script is and may touch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SCRIPT_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
AUTH_FAILURE_EXIT = 77  # a script exits with this when its credentials or cookies are rejected


class ScriptSpec(BaseModel):
    """One helper script: how to run it and the `.env` secrets it needs, by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SCRIPT_NAME)
    command: list[str] = Field(min_length=1, description="argv, run in scripts/; no shell.")
    description: str = ""
    secrets: list[str] = Field(default_factory=list, description="Names of .env entries it gets.")
    optional_secrets: list[str] = Field(
        default_factory=list,
        description="Names of .env entries it gets when they are set (e.g. one of several services).",
    )
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret settings it reads (e.g. base URLs), name -> default; a `.env` entry "
                    "of that name overrides the default. An empty default means it must be set.",
    )
    gated: bool = Field(default=False, description="Needs a human's approval before each run.")
    timeout_seconds: int = Field(default=300, ge=1, le=86400)
    site: str | None = Field(default=None, description="Site whose cookies it uses (auth retry).")
    actions: list[str] = Field(
        default_factory=list,
        description="Approved action kinds this script performs, e.g. video.publish.",
    )
    auth_errors: list[str] = Field(
        default_factory=list,
        description="Extra output fragments (case-insensitive) that mean its login was rejected.",
    )


class ScriptManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    scripts: list[ScriptSpec] = Field(default_factory=list)

    def get(self, name: str) -> ScriptSpec | None:
        return next((s for s in self.scripts if s.name == name), None)

    def for_action(self, kind: str) -> ScriptSpec | None:
        """The script whose `actions` lists this approved action kind."""
        return next((s for s in self.scripts if kind in s.actions), None)


class McpServer(BaseModel):
    """One MCP server for agent sessions: a local command or a remote URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(default="stdio", pattern="^(stdio|http|sse)$")
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class McpServersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_ref: str | None = Field(default=None, alias="$schema")
    mcpServers: dict[str, McpServer] = Field(default_factory=dict)
