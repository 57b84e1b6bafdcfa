"""A stand-in for a third-party MCP server (`mcp__youtube__*`): a real stdio MCP server that
"publishes" by appending the call's input to a file, one JSON line per call, and answers with a
video URL. The file is how a test counts how many times the tool really ran.

Usage: python youtube_mcp.py <calls file>
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [{"name": "upload", "description": "Publish a video on the channel.",
          "inputSchema": {"type": "object", "properties": {"title": {"type": "string"}},
                          "required": ["title"]}}]


def answer(request: dict[str, Any], calls: str) -> dict[str, Any] | None:
    method, rid = request.get("method"), request.get("id")
    if rid is None:
        return None  # a notification
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": request.get("params", {}).get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}}, "serverInfo": {"name": "youtube", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        args = request.get("params", {}).get("arguments") or {}
        with open(calls, "a", encoding="utf-8") as out:
            out.write(json.dumps(args) + "\n")
        with open(calls, encoding="utf-8") as counted:
            n = len(counted.readlines())
        result = {"content": [{"type": "text",
                               "text": f"published {args.get('title')!r} at https://videos.test/v/{n}"}]}
    else:
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": str(method)}}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main() -> None:
    calls = sys.argv[1]
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line), calls)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
