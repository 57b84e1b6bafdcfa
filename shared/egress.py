"""Where the agent's tools may connect: deny by default, the task's `allowed_domains` only.

Two enforcement points share this policy:

- Bash runs in the CLI's sandbox, whose network namespace has no route out except the CLI's
  own HTTP/SOCKS proxy. `sandbox_network` configures that proxy: a strict allow list (a host not
  on it is refused, never asked about) and a deny list of every local, private and metadata
  range, which the proxy also applies to the addresses an allowed name resolves to.
- WebFetch and fetching MCP tools run in the CLI's (or the server's) own process, outside the
  sandbox: `check_url`, called by the PreToolUse hook, refuses any URL whose host is not
  allowed, is an address literal in a non-public range (in any spelling: `2130706433`,
  `0x7f.1`, `[::ffff:127.0.0.1]`), or resolves to one.

The Claude API is reached by the CLI itself, never by the agent's tools, so it is on no list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .errors import KodaError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges no agent tool may reach whatever a task allows: loopback, this network, private,
#: carrier-grade NAT, link-local (cloud metadata at 169.254.169.254), unique-local IPv6,
#: multicast and the reserved blocks. The sandbox proxy applies these to resolved addresses.
DENIED_RANGES = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "fc00::/7", "fe80::/10",
    "ff00::/8",
)
#: Names that mean this machine or a cloud's metadata service, on any resolver.
DENIED_NAMES = ("localhost", "*.localhost", "localhost.localdomain", "ip6-localhost",
                "ip6-loopback", "metadata.google.internal", "metadata", "*.internal")
#: One allowed_domains entry: a host name, optionally `*.`-prefixed, optionally `:port`.
DOMAIN_PATTERN = r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}(:[0-9]{1,5})?$"
_DOMAIN = re.compile(DOMAIN_PATTERN)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class Refused(KodaError):
    """A destination the agent may not reach; the message is shown to the agent."""


def sandbox_network(allowed_domains: Iterable[str]) -> dict[str, Any]:
    """The `sandbox.network` settings: only `allowed_domains`, never a local or private range."""
    return {
        "allowedDomains": sorted(set(allowed_domains)),
        # Without it the proxy asks `can_use_tool` about an unlisted host (SandboxNetworkAccess).
        "strictAllowlist": True,
        "deniedDomains": [*DENIED_NAMES, *DENIED_RANGES],
    }


def domain_problem(entry: str) -> str | None:
    """Why `entry` cannot be an allowed domain, or None if it can (used by the tasks model)."""
    if not _DOMAIN.match(entry):
        return ("an allowed domain is a host name such as example.com, *.example.com or "
                "api.example.com:443 (no scheme, path or address literal)")
    host = entry.removeprefix("*.").split(":")[0]
    if any(_matches(host, name) for name in DENIED_NAMES):
        return f"{host} names this machine or a metadata service, which the agent never reaches"
    return None


def host_allowed(host: str, port: int, allowed: Iterable[str]) -> bool:
    """True if `host:port` matches an entry (`example.com`, `*.example.com`, `x.com:443`)."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        pattern, _, want_port = entry.lower().partition(":")
        if want_port and int(want_port) != port:
            continue
        if _matches(host, pattern):
            return True
    return False


def _matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host != pattern[2:]
    return host == pattern


def address_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a resolver or libc would accept, or None.

    `inet_aton` takes the legacy forms (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`) that
    `ipaddress` refuses but curl, browsers and getaddrinfo honour.
    """
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def public(address: IPAddress) -> bool:
    """True for an address on the public internet (not in any DENIED_RANGES block)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return public(address.ipv4_mapped)
    return address.is_global and not any(address in ipaddress.ip_network(r) for r in DENIED_RANGES
                                         if ipaddress.ip_network(r).version == address.version)


async def check_url(url: str, allowed: list[str]) -> None:
    """Raise `Refused` unless the agent may fetch `url` under the task's allowed domains."""
    if any(ch.isspace() or ch == "\\" or ord(ch) < 32 for ch in url):
        raise Refused(f"Refused: {url!r} is not a plain URL.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise Refused(f"Refused: only http and https URLs may be fetched, not {url!r}.")
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise Refused(f"Refused: {url!r} has an invalid port.") from None
    if not host:
        raise Refused(f"Refused: {url!r} names no host.")
    literal = address_literal(host)
    if literal is not None and not public(literal):
        raise Refused(f"Refused: {host} is a local, private or metadata address; the agent's "
                      "tools never reach this machine or its network.")
    if not allowed:
        raise Refused("Refused: this task allows no network access (tasks.json `allowed_domains` "
                      "is empty).")
    if not host_allowed(host, port, allowed):
        raise Refused(f"Refused: {host}:{port} is not in this task's allowed_domains "
                      f"({', '.join(allowed)}).")
    if literal is None:
        await _check_resolved(host, port)


async def _check_resolved(host: str, port: int) -> None:
    """An allowed name must resolve only to public addresses (no rebinding to loopback)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"Refused: {host} does not resolve ({exc.strerror or exc}).") from None
    for info in infos:
        address = address_literal(str(info[4][0]))
        if address is None or not public(address):
            raise Refused(f"Refused: {host} resolves to {info[4][0]}, a local, private or "
                          "metadata address.")


def urls_in(value: Any) -> list[str]:
    """Every string in a tool input (nested) that looks like a URL: what a fetching tool may use."""
    if isinstance(value, str):
        return [value.strip()] if _SCHEME.match(value.strip()) else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in urls_in(v)]
    if isinstance(value, list | tuple):
        return [u for v in value for u in urls_in(v)]
    return []
