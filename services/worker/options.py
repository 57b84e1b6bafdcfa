"""`ClaudeAgentOptions` for one session, and the clean environment the CLI runs in.

Promises: no host settings (`setting_sources=[]`, so `~/.claude/CLAUDE.md` stays out); the
home as `cwd`; the task's turn cap and budget; the guard hook on every tool call; MCP servers
from `mcp-servers.json` plus the in-process `koda` server; and an environment that carries the
Claude connection and nothing else of value.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koda.shared.egress import sandbox_network
from koda.shared.home import HomeLayout
from koda.shared.secrets import read_env_file
from koda.shared.settings import KodaSettings

from .guard import check_network, check_tool

log = logging.getLogger(__name__)

#: Inherited variables the CLI needs to run; every other inherited variable is blanked.
KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM", "USER", "SHELL",
            "LOGNAME")
#: The Claude connection, by its standard names; the only credentials the CLI receives.
CONNECTION_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN",
                  "ANTHROPIC_MODEL")


def connection(settings: KodaSettings, layout: HomeLayout) -> dict[str, str]:
    """The Claude connection: settings first (environment, `.env` of the cwd), then the home's `.env`."""
    from_settings = {
        "ANTHROPIC_BASE_URL": settings.anthropic_base_url,
        "ANTHROPIC_API_KEY": settings.anthropic_api_key.get_secret_value()
        if settings.anthropic_api_key else None,
        "CLAUDE_CODE_OAUTH_TOKEN": settings.claude_code_oauth_token.get_secret_value()
        if settings.claude_code_oauth_token else None,
        "ANTHROPIC_MODEL": settings.model,
    }
    home_env = read_env_file(layout.env)
    out: dict[str, str] = {}
    for name in CONNECTION_ENV:
        value = from_settings.get(name) or home_env.get(name)
        if value:
            out[name] = value
    return out


@functools.cache
def scrub_available() -> bool:
    """The CLI's subprocess scrub runs tools under bubblewrap; without it the CLI will not start."""
    bwrap = shutil.which("bwrap")
    if bwrap and shutil.which("socat"):
        # Installed is not enough: a container without user namespaces cannot run it.
        try:
            probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return True
    log.warning("bubblewrap or socat is missing or cannot run here: the CLI's subprocess env "
                "scrub and sandbox are off, so Bash can see the Claude credential (never a "
                "third-party one) and .env is guarded by the hook alone. apt-get install "
                "bubblewrap socat")
    return False


def cli_env(settings: KodaSettings, layout: HomeLayout,
            inherited: dict[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment overrides.

    The SDK starts the CLI with this process's environment plus these overrides, so every
    inherited variable not in KEEP_ENV is overridden with an empty value: a secret that reached
    the worker's environment (compose env files, a shell export) never reaches the agent.
    """
    inherited = dict(os.environ) if inherited is None else inherited
    env = {k: "" for k in inherited if k not in KEEP_ENV}
    env.update(connection(settings, layout))
    env.update({
        # Koda handles rate limits itself (limits.py): the CLI's own retries stay short.
        "CLAUDE_CODE_MAX_RETRIES": str(settings.claude_max_retries),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # The CLI strips its own credentials from the shells and tools it starts (needs bwrap).
        "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB": "1" if settings.claude_sandbox and scrub_available() else "0",
        "DISABLE_AUTOUPDATER": "1",
    })
    return env


def mcp_servers(layout: HomeLayout) -> dict[str, Any]:
    """MCP servers from mcp-servers.json (already validated by `koda doctor`), as SDK configs."""
    try:
        data = json.loads(layout.mcp_servers.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    servers: dict[str, Any] = {}
    for name, spec in (data.get("mcpServers") or {}).items():
        if not isinstance(spec, dict) or name == "koda":
            continue
        kind = spec.get("type", "stdio")
        if kind == "stdio" and spec.get("command"):
            servers[name] = {"type": "stdio", "command": spec["command"],
                             "args": list(spec.get("args", [])), "env": dict(spec.get("env", {}))}
        elif kind in ("http", "sse") and spec.get("url"):
            servers[name] = {"type": kind, "url": spec["url"], "headers": dict(spec.get("headers", {}))}
    return servers


def deny_rules(home: Path) -> list[str]:
    """Claude Code permission rules: credentials unreadable; identity, tasks, scripts, login
    recipes, MCP servers and skills not editable."""
    root = f"/{home}"  # `//abs/path` is an absolute path in a permission rule
    return [f"Read({root}/.env)", f"Read({root}/.env.*)", f"Read({root}/data/cookies)",
            f"Read({root}/data/cookies/**)", f"Edit({root}/.env)", f"Edit({root}/.env.*)",
            f"Edit({root}/data/cookies/**)", f"Edit({root}/soul.md)", f"Edit({root}/tasks.json)",
            # Code and recipes that handle credentials: with the Bash sandbox on, these rules
            # also stop shell writes (`echo > scripts/x.py`).
            f"Edit({root}/scripts/**)", f"Edit({root}/sites.json)", f"Edit({root}/mcp-servers.json)",
            f"Edit({root}/skills/**)"]


@dataclass
class SessionSpec:
    """Everything one session needs besides the prompt."""

    system_append: str
    max_turns: int
    max_budget_usd: float | None
    gated: list[str]
    resume: str | None = None
    #: Hosts the agent's tools may reach (tasks.json `allowed_domains`); none by default.
    allowed_domains: list[str] = field(default_factory=list)


def network_sandbox(spec: SessionSpec) -> Any:  # the SDK's SandboxNetworkConfig
    """The sandbox's `network` settings: Bash reaches only the task's domains, through the
    sandbox proxy, never a local or private address (policy and reasons in egress.py)."""
    return sandbox_network(spec.allowed_domains)


def network_disallowed(spec: SessionSpec) -> list[str]:
    """Fetching tools a task without `allowed_domains` is not offered at all (otherwise the
    hook checks each URL)."""
    return [] if spec.allowed_domains else ["WebFetch"]


def build_options(settings: KodaSettings, layout: HomeLayout, spec: SessionSpec,
                  koda_server: Any, stderr: Any = None) -> Any:
    """A `ClaudeAgentOptions` (the SDK is imported here, at first use)."""
    from claude_agent_sdk import (
        ClaudeAgentOptions,
        HookMatcher,
        PermissionResultAllow,
        PermissionResultDeny,
    )

    home = layout.root

    async def guard_hook(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        tool, tool_input = str(hook_input.get("tool_name", "")), dict(hook_input.get("tool_input") or {})
        reason = (check_tool(tool, tool_input, home, spec.gated)
                  or await check_network(tool, tool_input, spec.allowed_domains))
        if reason is None:
            return {}
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                       "permissionDecisionReason": reason}}

    async def allow(tool: str, tool_input: dict[str, Any], context: Any) -> Any:
        # The guard hook has already refused what is not allowed; nobody is there to ask.
        # The sandbox proxy asks about unlisted hosts only if its strict allow list is off:
        # a host is on the list or it is refused, never allowed by a yes-to-all callback.
        if tool == "SandboxNetworkAccess":
            return PermissionResultDeny(message="Refused: that host is not in this task's "
                                        "allowed_domains.")
        return PermissionResultAllow()

    servers: dict[str, Any] = {**mcp_servers(layout), "koda": koda_server}
    sandboxed = settings.claude_sandbox and scrub_available()
    return ClaudeAgentOptions(
        system_prompt={"type": "preset", "preset": "claude_code", "append": spec.system_append},
        setting_sources=[],
        cwd=str(home),
        max_turns=spec.max_turns,
        max_budget_usd=spec.max_budget_usd,
        model=settings.model,
        env=cli_env(settings, layout),
        mcp_servers=servers,
        disallowed_tools=["WebSearch", "CronCreate", "CronDelete", "ScheduleWakeup", "EnterWorktree",
                          *network_disallowed(spec)],
        hooks={"PreToolUse": [HookMatcher(matcher=None, hooks=[guard_hook])]},
        can_use_tool=allow,
        # Permission rules the CLI enforces itself; with the sandbox on, Read denies also bind
        # every Bash command at the OS level (bubblewrap), whatever the command's spelling.
        settings=json.dumps({"permissions": {"deny": deny_rules(home)}}),
        sandbox={"enabled": True, "autoAllowBashIfSandboxed": True,
                 "allowUnsandboxedCommands": False,
                 "network": network_sandbox(spec)} if sandboxed else None,
        resume=spec.resume,
        stderr=stderr,
    )


def home_path(settings: KodaSettings) -> Path:
    return settings.expanded_home()
