"""What the agent may touch: the policy behind the session's PreToolUse hook.

A PreToolUse hook runs before every tool call, including the read-only Bash commands and
allowed tools that skip `can_use_tool`, so this is where the rules live:

- file tools stay inside the home, and away from `.env*` and `data/cookies/`;
- what decides what runs with credentials or as the agent's identity is read-only to it:
  `scripts/` (code that receives secrets), `sites.json` (where logins are sent),
  `mcp-servers.json`, `soul.md`, `tasks.json`, `skills/`; changes to those are proposed;
- Bash may not name those paths (or `/proc/*/environ`);
- a tool matching the task's `gated` patterns is refused with a message telling the agent to
  propose it instead;
- WebFetch and other MCP servers' tools may fetch only URLs on the task's `allowed_domains`,
  never a local, private or metadata address (`check_network`, policy in egress.py).

This is one layer. The other two: the CLI's environment holds no third-party secret at all
(options.cli_env), and everything the koda tools return is redacted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from koda.shared.approvals import is_gated
from koda.shared.egress import Refused, check_url, urls_in

FILE_TOOLS = {"Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "Glob", "Grep", "LS"}
WRITE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
#: Home paths the agent may read but never change: a prompt-injected agent that could edit a
#: script or a login recipe could route a secret past every other guard.
#: Node resolves a script's require() up from scripts/ into the home: a module the agent wrote
#: there would run with the script's secrets.
READ_ONLY_DIRS = ("scripts", "skills", "node_modules")
READ_ONLY = (*READ_ONLY_DIRS, "sites.json", "mcp-servers.json", "soul.md", "tasks.json",
             ".koda-init.json", "package.json")
#: Home paths (as permission-rule patterns) the agent may neither read nor change: the
#: credentials and the cookie jars; `protected` below is the same test for one path.
SECRETS = (".env", ".env.*", "data/cookies", "data/cookies/**")
PATH_KEYS = ("file_path", "path", "notebook_path")
#: Names a shell command may not mention: credentials and other processes' environments.
_BASH_FORBIDDEN = re.compile(r"\.env\b|cookies|/proc/[^ ]*environ|\.claude|\.credentials")


def protected(home: Path, path: Path) -> bool:
    """True for the credentials file(s) and the cookie jars."""
    rel = path.relative_to(home)
    return (bool(rel.parts) and rel.parts[0].startswith(".env")) or rel.parts[:2] == ("data", "cookies")


def read_only(home: Path, path: Path) -> bool:
    """True for the files whose change must be proposed, not made."""
    rel = path.relative_to(home)
    return bool(rel.parts) and rel.parts[0] in READ_ONLY


def check_tool(tool: str, tool_input: dict[str, Any], home: Path, gated: list[str]) -> str | None:
    """None if the call may go ahead, else the reason it is refused (shown to the agent)."""
    if gated and is_gated(gated, tool):
        return (f"{tool} needs a person's approval. Do not call it directly: call "
                "mcp__koda__propose_action with the action and its arguments instead.")
    if tool in FILE_TOOLS:
        return _check_paths(tool, tool_input, home)
    if tool == "Bash":
        command = str(tool_input.get("command", ""))
        if _BASH_FORBIDDEN.search(command):
            return ("Refused: that command touches credentials (.env, cookies, the environment "
                    "of a process or ~/.claude). Helper scripts hold credentials: use run_script.")
    return None


def _check_paths(tool: str, tool_input: dict[str, Any], home: Path) -> str | None:
    given = [str(tool_input[k]) for k in PATH_KEYS if tool_input.get(k)]
    if tool in ("Glob", "Grep") and not given:
        given = [str(home)]
    for raw in given:
        path = Path(raw).expanduser()
        path = (path if path.is_absolute() else home / path).resolve()
        if path != home and home not in path.parents:
            return f"Refused: {raw} is outside your home ({home}). Work only with files in it."
        if path != home and protected(home, path):
            return f"Refused: {raw} holds credentials and is never readable by the agent."
        if tool in WRITE_TOOLS and path != home and read_only(home, path):
            return (f"Refused: {raw} decides what runs with credentials or who you are; you may "
                    "read it but not change it. Propose the change with "
                    "mcp__koda__propose_action (action config.change) instead.")
        if tool in ("Glob", "Grep") and (path == home or path == home / "data"):
            # A search over these folders would read .env or the cookie jars too.
            return (f"Refused: search a specific folder or file (e.g. data/drafts), not {raw}, "
                    "which contains credentials.")
    return None


#: Tools that fetch a URL outside the sandbox (in the CLI's or an MCP server's process).
FETCH_TOOLS = {"WebFetch"}
#: Koda's own tools reach the outside only through services that enforce their own limits
#: (the scraper keeps a job on its site's host).
KODA_TOOLS = "mcp__koda__"


async def check_network(tool: str, tool_input: dict[str, Any], allowed: list[str]) -> str | None:
    """None if the call fetches nothing, or only URLs the task allows; else the refusal."""
    if tool in FETCH_TOOLS:
        urls = [str(tool_input.get("url", ""))]
    elif tool.startswith("mcp__") and not tool.startswith(KODA_TOOLS):
        urls = urls_in(tool_input)
    else:
        return None
    for url in urls:
        try:
            await check_url(url, allowed)
        except Refused as refused:
            return str(refused)
    return None
