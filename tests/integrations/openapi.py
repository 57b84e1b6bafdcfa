"""Checking a fake's requests and replies against a (trimmed) OpenAPI 3 document with jsonschema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPECS = Path(__file__).parent / "specs"


class OpenApi:
    def __init__(self, name: str) -> None:
        self.doc = json.loads((SPECS / name).read_text())
        self.uri = f"urn:koda-spec:{name}"
        self.registry: Registry = Registry().with_resource(
            self.uri, Resource.from_contents(self.doc, default_specification=DRAFT202012))

    def _problems(self, schema: dict[str, Any], value: Any, where: str) -> list[str]:
        # A wrapper whose $ref resolves inside the document, so its components are found.
        wrapper = {"$ref": f"{self.uri}#" + schema["$ref"][1:]} if "$ref" in schema else schema
        validator = jsonschema.Draft202012Validator(wrapper, registry=self.registry)
        return [f"{where}: {'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
                for e in validator.iter_errors(value)]

    def operation(self, method: str, path: str) -> dict[str, Any]:
        return self.doc["paths"][path][method.lower()]  # type: ignore[no-any-return]

    def check(self, method: str, path: str, content_type: str, body: Any, status: int,
              reply: Any, reply_type: str = "application/json") -> list[str]:
        """Problems with one exchange: the request body, then the reply for its status."""
        op = self.operation(method, path)
        problems: list[str] = []
        content = op.get("requestBody", {}).get("content", {})
        media = content.get(content_type.split(";")[0])
        if media is None and content:
            problems.append(f"{method} {path}: request type {content_type} not in {sorted(content)}")
        elif media is not None:
            problems += self._problems(media["schema"], body, f"{method} {path} request")
        responses = op["responses"]
        answer = responses.get(str(status)) or responses.get("default")
        if answer is None:
            return [*problems, f"{method} {path}: status {status} not described"]
        schema = answer.get("content", {}).get(reply_type, {}).get("schema")
        if schema is not None:
            problems += self._problems(schema, reply, f"{method} {path} reply {status}")
        return problems
