"""Agent session transcripts in NATS: the SDK's `SessionStore` over the SESSIONS stream.

Every session the worker runs mirrors its transcript here (the SDK calls `append` once per turn
and before it yields the result), on `koda.sessions.<session id>`, kept for
`SESSION_RETENTION_DAYS` (longer than any approval may wait). A paused session is resumed by
whichever worker takes the decision: `restore` writes the transcript from NATS into that worker's
own CLI config folder, so nothing depends on the worker that started it, its `~/.claude` or its
host. The stream is file-backed, so a NATS restart keeps it.

Keys are session ids only (the SDK's project key is the home's path, which may differ between
hosts). An append larger than a message is split into parts; `load` joins them again and drops
entries whose `uuid` it has already seen (a retried append).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from nats.js.errors import NotFoundError

from koda.shared.bus import Bus
from koda.shared.errors import KodaError

STREAM = "SESSIONS"
SUBJECT = "koda.sessions"
#: Below the 1 MiB message limit, with room for headers.
PART_BYTES = 900 * 1024
_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


class BadSessionId(KodaError, ValueError):
    """A session id that is not the CLI's UUID (it becomes a subject and a file name)."""


def subject(session_id: str) -> str:
    if not _UUID.match(session_id):
        raise BadSessionId(f"not a session id: {session_id!r}")
    return f"{SUBJECT}.{session_id}"


class NatsSessionStore:
    """Append and load session transcripts (duck-typed `claude_agent_sdk.SessionStore`)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def append(self, key: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        if key.get("subpath") or not entries:
            return  # subagent transcripts are not needed to resume the main session
        target = subject(str(key["session_id"]))
        data = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries).encode()
        parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
        batch = uuid.uuid4().hex
        for index, part in enumerate(parts, 1):
            await self.bus.js.publish(target, part, stream=STREAM, headers={
                "Koda-Batch": batch, "Koda-Part": f"{index}/{len(parts)}"})

    async def load(self, key: dict[str, Any]) -> list[dict[str, Any]] | None:
        return await self.entries(str(key["session_id"]))

    async def entries(self, session_id: str) -> list[dict[str, Any]] | None:
        """The whole transcript in append order; None if nothing was stored for it."""
        target = subject(session_id)
        chunks: dict[str, list[bytes]] = {}
        order: list[str] = []
        seq = 0
        while True:
            try:
                msg = await self.bus.js.get_msg(STREAM, seq + 1, subject=target, next=True)
            except NotFoundError:
                break
            seq = int(msg.seq or 0)
            batch = (msg.headers or {}).get("Koda-Batch", str(seq))
            if batch not in chunks:
                chunks[batch] = []
                order.append(batch)
            chunks[batch].append(msg.data or b"")
        if not order:
            return None
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for batch in order:
            for line in b"".join(chunks[batch]).decode().splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                marker = entry.get("uuid") if isinstance(entry, dict) else None
                if marker:
                    if marker in seen:
                        continue
                    seen.add(marker)
                out.append(entry)
        return out

    async def restore(self, session_id: str, cwd: Path, config_dir: Path) -> list[dict[str, Any]]:
        """Write the stored transcript where this worker's CLI looks for it to `--resume`
        (`<config dir>/projects/<project key of cwd>/<id>.jsonl`, 0600). Raises if NATS holds
        none: a paused session that cannot be found must not silently start afresh."""
        from claude_agent_sdk import project_key_for_directory

        entries = await self.entries(session_id)
        if not entries:
            raise FileNotFoundError(f"session {session_id} is not in the {STREAM} stream")
        folder = config_dir / "projects" / project_key_for_directory(str(cwd))
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{session_id}.jsonl"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for entry in entries:
                out.write(json.dumps(entry, separators=(",", ":")) + "\n")
        os.replace(tmp, path)
        return entries


class MirrorOnly:
    """The store as the SDK sees it in a session: mirror every append, but load nothing.

    The SDK would otherwise resume from a copy in a temporary CLAUDE_CONFIG_DIR outside the
    sandbox settings computed for this session; `restore` puts the transcript in the worker's
    own config folder instead, so a resumed session has exactly the original containment.
    """

    def __init__(self, store: NatsSessionStore) -> None:
        self.store = store

    async def append(self, key: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        await self.store.append(key, entries)

    async def load(self, key: dict[str, Any]) -> list[dict[str, Any]] | None:
        return None


def call_answered(entries: list[dict[str, Any]], tool_use_id: str) -> bool:
    """True if the transcript already holds the result of `tool_use_id` (the resumed session
    ran it before a crash): resuming then needs a prompt, not the deferred call."""
    for entry in entries:
        message = entry.get("message") if isinstance(entry, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                if (isinstance(block, dict) and block.get("type") == "tool_result"
                        and block.get("tool_use_id") == tool_use_id):
                    return True
    return False
