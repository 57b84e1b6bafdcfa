"""What compose's healthcheck costs: `koda health NAME`, as every Koda container runs it.

Run: `python -m bench.healthcheck`. Starts a local stack (the real `koda up -d`), runs each
service's healthcheck command several times, and measures in the same run the floor: a bare
Python start, and Python importing nats-py. Reports wall time (against compose's 10 s timeout)
and the CPU the checks cost at compose's interval for all six services.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from koda.shared.settings import SERVICES
from tests.deploy.artifacts import compose_model, duration_seconds
from tests.stack import KODA, Stack

ROOT = Path(__file__).resolve().parent.parent

RUNS = 5


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit code) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.run(argv, env=env, capture_output=True, timeout=60).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def sample(argv: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    runs = [timed(argv, env) for _ in range(RUNS)]
    assert all(code == 0 for _, _, code in runs), (argv, runs)
    return {"wall_ms": statistics.median(r[0] for r in runs) * 1000,
            "cpu_ms": statistics.median(r[1] for r in runs) * 1000}


def main() -> None:
    check = compose_model()["services"]["worker"]["healthcheck"]
    interval, timeout = duration_seconds(check["interval"]), duration_seconds(check["timeout"])
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        stack.up()
        try:
            time.sleep(2)
            for name in SERVICES:
                rows[name] = sample([KODA, "health", name], stack.env)
        finally:
            stack.down()
    bare = sample([sys.executable, "-c", "pass"])
    nats_import = sample([sys.executable, "-c", "import sys; sys.modules['aiohttp'] = None; import nats"])
    print(f"{'command':<28} {'wall ms':>8} {'cpu ms':>8}")
    for name, row in rows.items():
        print(f"{'koda health ' + name:<28} {row['wall_ms']:>8.0f} {row['cpu_ms']:>8.0f}")
    print(f"{'floor: python -c pass':<28} {bare['wall_ms']:>8.0f} {bare['cpu_ms']:>8.0f}")
    print(f"{'floor: python, import nats':<28} {nats_import['wall_ms']:>8.0f} {nats_import['cpu_ms']:>8.0f}")
    wall = statistics.median(r["wall_ms"] for r in rows.values())
    cpu = statistics.median(r["cpu_ms"] for r in rows.values())
    # Six containers, one check each per interval: the share of one core spent on checking.
    cpu_pct = len(SERVICES) * cpu / 1000 / interval * 100
    result = {
        "median_wall_ms": round(wall), "median_cpu_ms": round(cpu),
        "floor_python_wall_ms": round(bare["wall_ms"]), "floor_nats_wall_ms": round(nats_import["wall_ms"]),
        "ratio_to_nats_floor": round(wall / nats_import["wall_ms"], 2),
        "timeout_s": timeout, "interval_s": interval,
        "core_pct_all_services": round(cpu_pct, 2), "per_service": rows,
    }
    out = ROOT / "bench" / "results" / "healthcheck.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"RESULT healthcheck median_wall_ms={result['median_wall_ms']} "
          f"median_cpu_ms={result['median_cpu_ms']} floor_nats_wall_ms={result['floor_nats_wall_ms']} "
          f"ratio_to_nats_floor={result['ratio_to_nats_floor']} timeout_s={timeout:.0f} "
          f"core_pct_all_services={result['core_pct_all_services']}")


if __name__ == "__main__":
    main()
