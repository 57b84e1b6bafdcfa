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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koda.shared.egress import sandbox_network
from koda.shared.home import HomeLayout
from koda.shared.secrets import read_env_file
from koda.shared.settings import KodaSettings

from .cli_process import launcher
from .guard import READ_ONLY, READ_ONLY_DIRS, SECRETS, check_network, check_tool

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


#: What the bundled CLI passes bubblewrap for every sandboxed command (Claude Code 2.1.x): new
#: user, pid and network namespaces, a fresh /proc and /dev, all capabilities dropped. A probe
#: with fewer flags (`bwrap --ro-bind / / true`) passes where these fail, e.g. under Docker's
#: default seccomp profile, which refuses the user namespace.
BWRAP_PROBE = ("--new-session", "--die-with-parent", "--unshare-net", "--ro-bind", "/", "/",
               "--dev", "/dev", "--unshare-pid", "--unshare-user", "--cap-drop", "ALL",
               "--proc", "/proc", "--", "true")


@functools.cache
def sandbox_problem() -> str | None:
    """Why the CLI's sandbox cannot run here, or None when it can (probed once per process)."""
    bwrap, socat = shutil.which("bwrap"), shutil.which("socat")
    if not bwrap or not socat:
        return (f"{'bubblewrap' if not bwrap else 'socat'} is not installed, so the agent's sandbox "
                "cannot run: apt-get install bubblewrap socat, or set KODA_CLAUDE_SANDBOX=false to run "
                "the agent unsandboxed (its shell can then read every file this user can)")
    try:
        probe = subprocess.run([bwrap, *BWRAP_PROBE], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started ({exc})"
    if probe.returncode != 0:
        said = probe.stderr.decode("utf-8", "replace").strip()[:300]
        return (f"bubblewrap cannot create the sandbox's namespaces here ({said or probe.returncode}). "
                "In a container, run the worker with the seccomp profile shipped in deploy/ "
                "(compose.yaml does) or set KODA_CLAUDE_SANDBOX=false to run the agent unsandboxed")
    return None


def scrub_available() -> bool:
    """The CLI's sandbox (and its subprocess credential scrub) can run on this machine."""
    return sandbox_problem() is None


def sandbox_refusal(settings: KodaSettings) -> str | None:
    """Why an agent run must be refused: the sandbox is wanted (the default) but cannot run.
    An operator who really wants the agent unsandboxed says so with KODA_CLAUDE_SANDBOX=false."""
    if not settings.claude_sandbox:
        return None
    problem = sandbox_problem()
    return None if problem is None else f"agent runs are refused: {problem}"


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
        "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB": "1" if settings.claude_sandbox else "0",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CONFIG_DIR": str(config_dir(settings)),
        # The agent's `~` is its home: the host user's home is denied to the sandbox, and the
        # CLI guards the shell's startup files under $HOME, which must be a folder it can reach.
        "HOME": str(layout.root),
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
    secret = [f"{root}/{name}" for name in SECRETS]
    # With the Bash sandbox on, the Edit rules also stop shell writes (`echo > scripts/x.py`).
    fixed = [f"{root}/{name}/**" if name in READ_ONLY_DIRS else f"{root}/{name}" for name in READ_ONLY]
    return [*(f"Read({p})" for p in secret), *(f"Edit({p})" for p in [*secret, *fixed])]


#: Top-level folders that hold the system itself (programs, libraries, configuration, devices).
#: Everything else (home folders, /tmp, /var, /opt, /srv, mounts, the checkout, the state
#: folder) is unreadable to the agent's shell, except the way down to its home.
SYSTEM_ROOTS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev", "proc",
                          "sys"})
#: Inside the system folders, what only root should read (the worker may run as root).
SYSTEM_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
                  "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private", "/etc/security/opasswd")


def config_dir(settings: KodaSettings) -> Path:
    """`CLAUDE_CONFIG_DIR`: the CLI's own folder (settings, transcripts, shell snapshots) in the
    state folder, so the host user's `~/.claude` is never read, written or shown to the agent."""
    return settings.expanded_state() / "claude"


def cli_tmp() -> Path:
    """The temporary folder the CLI gives sandboxed commands (its TMPDIR)."""
    return Path("/tmp") / f"claude-{os.getuid()}"


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def denied_around(keep: list[Path], root: Path = Path("/")) -> tuple[list[str], list[str]]:
    """Deny by default: (read denies, write denies) for everything but the system folders and
    the paths in `keep`, walking down from `/` and denying every sibling on the way.

    Each top-level folder is denied together with its children: the CLI (2.1.x) binds some
    top-level folders back in whole (/home, /root, /tmp, /var, /opt, /run, /mnt) after its
    denies, so only a deny one level below them holds. A top-level folder that leads to no kept
    path is also write-denied, so nothing the agent writes lands in /root or /var.
    """
    keep = [k.resolve() for k in keep]
    on_path = {a for k in keep for a in (k, *k.parents)}
    read: list[str] = []
    write: list[str] = []

    def visit(folder: Path) -> None:
        for child in _children(folder):
            if child in keep or (folder == root and child.name in SYSTEM_ROOTS):
                continue
            if child in on_path:
                visit(child)
                continue
            read.append(str(child))
            if folder == root and child.is_dir() and not child.is_symlink():
                read.extend(str(c) for c in _children(child))
                write.append(str(child))

    visit(root)
    return read, write


def filesystem_settings(settings: KodaSettings, layout: HomeLayout) -> dict[str, Any]:
    """The CLI settings that bound what the agent can read and write, deny by default.

    Two layers, both enforced by the CLI whatever the model asks: `permissions` bind its file
    tools (Read, Grep, Glob refuse anything outside the home; the deny rules keep credentials
    unreadable and identity/scripts uneditable), and `sandbox.filesystem` binds every Bash
    command at the OS level (bubblewrap mounts), so no spelling of a path (`~/.[c]laude`,
    `python -c open(...)`, a symlink, a hard link) reaches what is denied. The guard hook is a
    third layer. The folder listing is taken when a session starts.
    """
    home, state = layout.root, settings.expanded_state()
    deny_read, deny_write = denied_around([home, cli_tmp()])
    # Named even when they sit inside an allowed region (a home under the state folder, or
    # the other way round): an allowRead never re-opens a denyRead entry below it.
    deny_read += [str(state), str(layout.env), f"{home}/.env.*", str(layout.cookies),
                  *(p for p in SYSTEM_SECRETS if Path(p).exists())]
    host_home = Path.home().resolve()
    if host_home not in (home, *home.parents):  # e.g. HOME=/root with the home in /srv/koda
        deny_read.append(str(host_home))
    # The CLI's shell snapshot, which every sandboxed command sources, lives in its config folder.
    allow_read = [str(config_dir(settings) / "shell-snapshots")]
    return {
        "permissions": {
            "deny": deny_rules(home),
            # File tools: no reads outside the working directory (the home), in any mode.
            "blockReadsOutsideWorkingDirectories": True,
        },
        "sandbox": {"filesystem": {
            "denyRead": sorted(set(deny_read)), "allowRead": allow_read,
            "denyWrite": sorted({*deny_write, str(state), str(layout.env), str(layout.cookies)})}},
    }


@dataclass
class SessionSpec:
    """Everything one session needs besides the prompt."""

    system_append: str
    max_turns: int
    max_budget_usd: float | None
    gated: list[str]
    resume: str | None = None
    model: str | None = None  # admission's cheaper model; None = the configured one
    #: Checked before every tool call: a reason when this attempt no longer owns the run.
    fence: Callable[[], Awaitable[str | None]] | None = None
    #: Hosts the agent's tools may reach (tasks.json `allowed_domains`); none by default.
    allowed_domains: list[str] = field(default_factory=list)
    #: Pauses gated calls for a person and answers them on resume (gate.ApprovalGate).
    gate: Any = None
    #: Where the transcript is mirrored (session_store.MirrorOnly over NATS).
    session_store: Any = None


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
        reason = await spec.fence() if spec.fence else None
        gate = spec.gate
        reason = (reason or check_tool(tool, tool_input, home, [] if gate else spec.gated)
                  or await check_network(tool, tool_input, spec.allowed_domains))
        if reason is None and gate is not None and gate.gated(tool):
            verdict = await gate.check(tool, tool_input, tool_use_id, hook_input.get("session_id"))
            out: dict[str, Any] = {"hookEventName": "PreToolUse",
                                   "permissionDecision": verdict.decision}
            if verdict.reason:
                out["permissionDecisionReason"] = verdict.reason
            if verdict.updated_input is not None:
                out["updatedInput"] = verdict.updated_input
            return {"hookSpecificOutput": out}
        if reason is None:
            return {}
        return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                       "permissionDecisionReason": reason}}

    async def after_hook(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        if spec.gate is not None:
            await spec.gate.ran(tool_use_id, hook_input.get("tool_response"))
        return {}

    async def allow(tool: str, tool_input: dict[str, Any], context: Any) -> Any:
        # The guard hook has already refused what is not allowed; nobody is there to ask.
        # The sandbox proxy asks about unlisted hosts only if its strict allow list is off:
        # a host is on the list or it is refused, never allowed by a yes-to-all callback.
        if tool == "SandboxNetworkAccess":
            return PermissionResultDeny(message="Refused: that host is not in this task's "
                                        "allowed_domains.")
        return PermissionResultAllow()

    servers: dict[str, Any] = {**mcp_servers(layout), "koda": koda_server}
    files = filesystem_settings(settings, layout)
    # The caller has refused the run when the sandbox is wanted but cannot run (SandboxUnavailable);
    # only an explicit KODA_CLAUDE_SANDBOX=false gets here without it.
    # `filesystem` is a CLI setting the SDK's SandboxSettings type does not list yet.
    sandbox: Any = {"enabled": True, "failIfUnavailable": True, "autoAllowBashIfSandboxed": True,
               "allowUnsandboxedCommands": False, "network": network_sandbox(spec),
               **files["sandbox"]} if settings.claude_sandbox else None
    return ClaudeAgentOptions(
        system_prompt={"type": "preset", "preset": "claude_code", "append": spec.system_append},
        setting_sources=[],
        cwd=str(home),
        max_turns=spec.max_turns,
        max_budget_usd=spec.max_budget_usd,
        model=spec.model or settings.model,
        env=cli_env(settings, layout),
        mcp_servers=servers,
        disallowed_tools=["WebSearch", "CronCreate", "CronDelete", "ScheduleWakeup", "EnterWorktree",
                          *network_disallowed(spec)],
        hooks={"PreToolUse": [HookMatcher(matcher=None, hooks=[guard_hook])],
               "PostToolUse": [HookMatcher(matcher=None, hooks=[after_hook])]},
        can_use_tool=allow,
        # Permission rules the CLI enforces itself; with the sandbox on, Read denies also bind
        # every Bash command at the OS level (bubblewrap), whatever the command's spelling.
        settings=json.dumps({"permissions": files["permissions"]}),
        sandbox=sandbox,
        resume=spec.resume,
        session_store=spec.session_store,
        # Each frame reaches NATS at once, not at the turn's end: a worker killed after a
        # paused call ran leaves its result there for the next one.
        session_store_flush="eager",
        stderr=stderr,
        cli_path=launcher(settings.expanded_state()),
    )
