"""Discord's OpenAPI description (trimmed, see trim_spec.py) as a validator for the fake
Discord's routes and payloads and for what the bot sends."""

from __future__ import annotations

import json
import re
import urllib.parse
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = Path(__file__).with_name("openapi.trimmed.json")
BASE = "urn:discord-openapi"


@cache
def spec() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SPEC_FILE.read_text())
    return data


@cache
def _registry() -> Registry:
    return Registry().with_resource(BASE, Resource.from_contents(
        spec(), default_specification=DRAFT202012))


def _pointer(*parts: str) -> str:
    escaped = [urllib.parse.quote(p.replace("~", "~0").replace("/", "~1"), safe="~@")
               for p in parts]
    return f"{BASE}#/" + "/".join(escaped)


def template_of(path: str) -> str | None:
    """The spec's path template for a concrete path (literal segments win over parameters)."""
    best: tuple[int, str] | None = None
    for template in spec()["paths"]:
        parts = ["[^/]+" if p.startswith("{") else re.escape(p)
                 for p in template.strip("/").split("/")]
        if re.fullmatch("/" + "/".join(parts), path):
            literal = sum(not p.startswith("{") for p in template.split("/"))
            if best is None or literal > best[0]:
                best = (literal, template)
    return best[1] if best else None


def _errors(pointer: str, instance: Any) -> list[str]:
    validator = Draft202012Validator({"$ref": pointer}, registry=_registry())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)]


def response_problems(method: str, path: str, status: int, headers: dict[str, str],
                      body: Any) -> list[str]:
    """What in a response does not match the description (empty when it all does)."""
    template = template_of(path) or ""
    op = spec()["paths"].get(template, {}).get(method.lower())
    if op is None:
        return [f"{method} {path}: no such operation in Discord's description"]
    key = str(status) if str(status) in op["responses"] else f"{str(status)[0]}XX"
    response = op["responses"].get(key)
    if response is None:
        return [f"{method} {template}: status {status} is not one Discord documents"]
    pointer: tuple[str, ...] = ("paths", template, method.lower(), "responses", key)
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        pointer = ("components", "responses", name)
        response = spec()["components"]["responses"][name]
    problems = []
    if status == 429:
        problems += [f"429 without header {h}" for h in response.get("headers", {})
                     if h not in headers]
    content = response.get("content")
    if content is None:
        return problems + ([f"{method} {template} {status}: body where none is documented"]
                           if body not in (None, "", b"") else [])
    return problems + [f"{method} {template} {status} {p}" for p in
                       _errors(_pointer(*pointer, "content", "application/json", "schema"), body)]


def request_problems(method: str, path: str, body: Any) -> list[str]:
    """What in a request body does not match the description."""
    template = template_of(path)
    op = spec()["paths"].get(template or "", {}).get(method.lower())
    if op is None:
        return [f"{method} {path}: no such operation in Discord's description"]
    if body is None:
        return []
    if "requestBody" not in op:
        return [f"{method} {template}: a body where none is documented"]
    pointer = _pointer("paths", template or "", method.lower(), "requestBody", "content",
                       "application/json", "schema")
    return [f"{method} {template} request {p}" for p in _errors(pointer, body)]
