"""A checker for AT Protocol lexicon schemas (the subset the Bluesky fake's methods use): types,
required fields, lengths, enums, refs and unions, following the lexicon spec. Unknown fields are
allowed, as the protocol allows them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SPECS = Path(__file__).parent / "specs" / "atproto"
FORMATS = {
    "did": re.compile(r"^did:[a-z]+:[a-zA-Z0-9._:%-]+$"),
    "handle": re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
                         r"[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"),
    "at-uri": re.compile(r"^at://[^/]+(/[a-zA-Z0-9.-]+(/[a-zA-Z0-9._~:-]+)?)?$"),
    "nsid": re.compile(r"^[a-zA-Z]([a-zA-Z0-9-]*\.)+[a-zA-Z]+[a-zA-Z0-9]*$"),
    "record-key": re.compile(r"^[a-zA-Z0-9._~:-]{1,512}$"),
    "tid": re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$"),
    "cid": re.compile(r"^[a-z0-9]{8,}$"),
    "uri": re.compile(r"^[a-z][a-z0-9+.-]*:\S+$"),
    "datetime": re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"),
    "language": re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9-]+)?$"),
}


class Lexicons:
    def __init__(self) -> None:
        self.docs = {json.loads(p.read_text())["id"]: json.loads(p.read_text())
                     for p in SPECS.glob("*.json")}

    def _def(self, ref: str, context: str) -> dict[str, Any]:
        nsid, _, name = ref.partition("#")
        doc = self.docs[nsid or context]
        return doc["defs"][name or "main"]  # type: ignore[no-any-return]

    def method(self, nsid: str) -> dict[str, Any]:
        return self.docs[nsid]["defs"]["main"]  # type: ignore[no-any-return]

    def check(self, schema: dict[str, Any], value: Any, context: str, where: str = "$") -> list[str]:
        """Every way `value` breaks `schema`, as `path: problem` lines."""
        kind = schema.get("type")
        errors: list[str] = []
        if kind == "ref":
            ref = schema["ref"]
            ctx = ref.split("#")[0] or context
            return self.check(self._def(ref, context), value, ctx, where)
        if kind == "union":
            if not isinstance(value, dict) or "$type" not in value:
                return [f"{where}: a union value needs $type"]
            wanted = value["$type"].removesuffix("#main")
            refs = [r if not r.startswith("#") else context + r for r in schema["refs"]]
            if wanted not in refs:
                return [f"{where}: $type {wanted} is not one of {refs}"]
            ctx = wanted.split("#")[0]
            return self.check(self._def(wanted, context), value, ctx, where)
        if kind in ("object", "record", "params"):
            body = schema.get("record", schema)
            if not isinstance(value, dict):
                return [f"{where}: expected an object"]
            for name in body.get("required", []):
                if name not in value:
                    errors.append(f"{where}.{name}: required")
            for name, sub in body.get("properties", {}).items():
                if name in value and not (value[name] is None and name in body.get("nullable", [])):
                    errors += self.check(sub, value[name], context, f"{where}.{name}")
            return errors
        if kind == "array":
            if not isinstance(value, list):
                return [f"{where}: expected an array"]
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errors.append(f"{where}: more than {schema['maxLength']} items")
            for i, item in enumerate(value):
                errors += self.check(schema["items"], item, context, f"{where}[{i}]")
            return errors
        if kind == "string":
            if not isinstance(value, str):
                return [f"{where}: expected a string"]
            if "maxLength" in schema and len(value.encode()) > schema["maxLength"]:
                errors.append(f"{where}: longer than {schema['maxLength']} bytes")
            if "maxGraphemes" in schema and len(value) > schema["maxGraphemes"]:
                errors.append(f"{where}: longer than {schema['maxGraphemes']} graphemes")
            fmt = schema.get("format")
            if fmt in FORMATS and not FORMATS[fmt].match(value):
                errors.append(f"{where}: {value!r} is not a {fmt}")
            if fmt == "at-identifier" and not (FORMATS["did"].match(value) or FORMATS["handle"].match(value)):
                errors.append(f"{where}: {value!r} is not a DID or handle")
            if "enum" in schema and value not in schema["enum"]:
                errors.append(f"{where}: {value!r} not in {schema['enum']}")
            return errors
        if kind == "integer":
            if not isinstance(value, int) or isinstance(value, bool):
                return [f"{where}: expected an integer"]
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{where}: below {schema['minimum']}")
            return errors
        if kind == "boolean":
            return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
        if kind == "blob":
            ok = isinstance(value, dict) and value.get("$type") == "blob" and "ref" in value \
                and isinstance(value.get("mimeType"), str) and isinstance(value.get("size"), int)
            errors = [] if ok else [f"{where}: not a blob"]
            accept = schema.get("accept")
            patterns = [a.replace("*", ".*") for a in accept or []]
            if ok and patterns and not any(re.fullmatch(p, value["mimeType"]) for p in patterns):
                errors.append(f"{where}: blob type {value['mimeType']} not accepted")
            return errors
        if kind in ("unknown", "bytes", "cid-link", None):
            return []
        return [f"{where}: schema type {kind} not supported by this checker"]

    def check_exchange(self, method: str, query: dict[str, str], body: Any, status: int,
                       reply: Any) -> list[str]:
        """An XRPC call checked against its lexicon: params or input, output, and error names."""
        nsid = method
        main = self.method(nsid)
        errors: list[str] = []
        if main["type"] == "query" and "parameters" in main:
            params = main["parameters"]
            for name in params.get("required", []):
                if name not in query:
                    errors.append(f"{nsid} params.{name}: required")
            unknown = set(query) - set(params.get("properties", {}))
            errors += [f"{nsid} params.{name}: not in the lexicon" for name in sorted(unknown)]
            for name, sub in params.get("properties", {}).items():
                if name in query and sub.get("type") == "string":
                    errors += self.check(sub, query[name], nsid, f"{nsid} params.{name}")
        schema = (main.get("input") or {}).get("schema")
        if schema is not None:
            errors += self.check(schema, body, nsid, f"{nsid} input")
        if status == 200:
            out = (main.get("output") or {}).get("schema")
            if out is not None:
                errors += self.check(out, reply, nsid, f"{nsid} output")
        else:
            if not isinstance(reply, dict) or not isinstance(reply.get("error"), str):
                errors.append(f"{nsid}: error reply without an `error` name: {reply}")
            declared = {e["name"] for e in main.get("errors", [])}
            generic = {"InvalidRequest", "ExpiredToken", "InvalidToken", "AuthMissing", "AuthRequiredError",
                       "AuthenticationRequired", "RateLimitExceeded", "RecordNotFound",
                       "MethodNotImplemented"}
            if isinstance(reply, dict) and reply.get("error") not in declared | generic:
                errors.append(f"{nsid}: error {reply.get('error')} is neither declared nor an XRPC error")
        return errors
