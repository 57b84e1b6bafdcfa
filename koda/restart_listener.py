"""A supervisord event listener that counts restarts, since supervisord itself keeps no count.

Every exit of a supervised program (PROCESS_STATE_EXITED) and every failed start
(PROCESS_STATE_BACKOFF) is a restart; the counts and recent exit times go to a JSON file that
the watchdog exports as `koda_service_restarts_total` and `koda status` shows. Stdlib only, so
it costs a few MB and cannot break with the services.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RECENT = 50  # exit times kept per program, enough for crash-loop windows


def _parse(line: str) -> dict[str, str]:
    return dict(item.split(":", 1) for item in line.split() if ":" in item)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record(path: Path, event: str, payload: dict[str, str]) -> None:
    """Count one restart of the program named in `payload` (atomic rewrite of the file)."""
    data = _load(path)
    name = payload.get("processname", "?")
    entry = data.setdefault(name, {"restarts": 0, "recent": []})
    entry["restarts"] += 1
    entry["last_event"] = event
    entry["last_expected"] = payload.get("expected") == "1"
    entry["recent"] = [*entry.get("recent", []), time.time()][-RECENT:]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def main() -> None:
    path = Path(sys.argv[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        header = _parse(sys.stdin.readline())
        payload_text = sys.stdin.read(int(header.get("len", "0")))
        event = header.get("eventname", "")
        if event in ("PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"):
            try:
                record(path, event, _parse(payload_text.splitlines()[0] if payload_text else ""))
            except OSError as exc:
                sys.stderr.write(f"restart listener could not write {path}: {exc}\n")
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
