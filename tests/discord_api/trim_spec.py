"""Cut Discord's OpenAPI description down to the routes the fake Discord serves.

Usage: python -m tests.discord_api.trim_spec <openapi.json from discord/discord-api-spec> <commit>
Writes `openapi.trimmed.json` beside this file: those paths and methods, and every schema they
reference (transitively), with the source commit in `info.x-source`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("openapi.trimmed.json")
#: Path template -> methods the fake Discord implements (tests/fake_discord.py ROUTES).
ROUTES: dict[str, tuple[str, ...]] = {
    "/users/@me": ("get",),
    "/oauth2/applications/@me": ("get",),
    "/gateway": ("get",),
    "/gateway/bot": ("get",),
    "/applications/{application_id}/commands": ("put",),
    "/applications/{application_id}/guilds/{guild_id}/commands": ("put",),
    "/interactions/{interaction_id}/{interaction_token}/callback": ("post",),
    "/webhooks/{webhook_id}/{webhook_token}": ("post",),
    "/webhooks/{webhook_id}/{webhook_token}/messages/@original": ("get", "patch"),
    "/channels/{channel_id}": ("get",),
    "/channels/{channel_id}/messages": ("post",),
    "/channels/{channel_id}/messages/{message_id}": ("get", "patch", "delete"),
    "/channels/{channel_id}/messages/{message_id}/threads": ("post",),
    "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/{user_id}": ("delete",),
}
#: Schemas the fake's test validates payloads against, kept even if no route names them.
EXTRA = ("RatelimitedResponse", "ErrorResponse")


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _strip(node: Any) -> Any:
    """Drop prose: the routes and shapes are what the fake is checked against."""
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in ("description", "summary")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def trim(spec: dict[str, Any], commit: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in ROUTES.items():
        item = spec["paths"][path]
        paths[path] = {k: v for k, v in item.items() if k in methods or k == "parameters"}
    components: dict[str, dict[str, Any]] = {}
    todo = _refs(paths) | {f"#/components/schemas/{name}" for name in EXTRA}
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        todo |= _refs(node) - seen
    info = {**spec["info"], "x-source": f"github.com/discord/discord-api-spec@{commit} specs/openapi.json"}
    return {"openapi": spec["openapi"], "info": info, "paths": _strip(paths),
            "components": {k: _strip(dict(sorted(v.items()))) for k, v in sorted(components.items())}}


def dump(spec: dict[str, Any]) -> str:
    """One line per path and per schema: small, and a spec update shows as a readable diff."""
    def block(items: dict[str, Any]) -> str:
        return ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in items.items())

    head = {k: spec[k] for k in ("openapi", "info")}
    return (json.dumps(head)[:-1] + ',\n"paths": {\n' + block(spec["paths"])
            + '\n},\n"components": {\n' + ",\n".join(
                f'{json.dumps(kind)}: {{\n{block(items)}\n}}'
                for kind, items in spec["components"].items()) + "\n}}\n")


if __name__ == "__main__":
    full = json.loads(Path(sys.argv[1]).read_text())
    trimmed = trim(full, sys.argv[2])
    OUT.write_text(dump(trimmed))
    print(OUT, OUT.stat().st_size)
