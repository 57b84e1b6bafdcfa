"""Idle memory of the whole local stack: supervisord, NATS and six services, RSS and PSS summed.

Run: `python -m bench.stack_memory`. Starts a stack on a temp home through the real `koda up -d`,
lets it idle, sums the process tree, and measures in the same run the floor: a bare Python
interpreter, and one with just a NATS connection, the least any service could cost.
Target: at most 300 MB RSS for the whole stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent

TARGET_RSS_MB = 300.0


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            out += [child, *children(child)]
    return out


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB from /proc."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pss = rss
    return rss, pss


def name_of(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(c.decode() for c in cmd if c)
    for key in ("supervisord", "nats-server", "restart_listener"):
        if key in text:
            return key
    return text.split()[-1] if "koda service" in text else text[:40]


def floor(code: str) -> tuple[int, int]:
    proc = subprocess.Popen([sys.executable, "-c", code + "\nimport time\nprint('ready', flush=True)\n"
                             "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    try:
        return memory_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        stack.up()
        try:
            time.sleep(5)  # idle: past start-up allocations, a few heartbeats in
            root = int((stack.state / "supervisord.pid").read_text())
            rows = [(name_of(pid), *memory_kb(pid)) for pid in [root, *children(root)]]
        finally:
            stack.down()
    bare = floor("pass")
    with_nats = floor("import sys; sys.modules['aiohttp'] = None\nimport asyncio, nats")
    rss = sum(r[1] for r in rows) / 1024
    pss = sum(r[2] for r in rows) / 1024
    print(f"{'process':<18} {'RSS MB':>8} {'PSS MB':>8}")
    for name, r, p in sorted(rows):
        print(f"{name:<18} {r / 1024:>8.1f} {p / 1024:>8.1f}")
    print(f"{'TOTAL':<18} {rss:>8.1f} {pss:>8.1f}")
    print(f"{'floor: bare python':<18} {bare[0] / 1024:>8.1f} {bare[1] / 1024:>8.1f}")
    print(f"{'floor: +nats-py':<18} {with_nats[0] / 1024:>8.1f} {with_nats[1] / 1024:>8.1f}")
    result = {
        "rss_mb": round(rss, 1), "pss_mb": round(pss, 1), "target_rss_mb": TARGET_RSS_MB,
        "processes": len(rows), "floor_python_rss_mb": round(bare[0] / 1024, 1),
        "floor_nats_client_rss_mb": round(with_nats[0] / 1024, 1),
        "per_process": {n: {"rss_mb": round(r / 1024, 1), "pss_mb": round(p / 1024, 1)}
                        for n, r, p in rows},
        "pass": rss <= TARGET_RSS_MB,
    }
    out = ROOT / "bench" / "results" / "stack_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"RESULT stack_memory rss_mb={result['rss_mb']} pss_mb={result['pss_mb']} "
          f"target_rss_mb={TARGET_RSS_MB:.0f} processes={len(rows)} pass={str(result['pass']).lower()}")


if __name__ == "__main__":
    main()
