"""Idle memory of the worker alone: RSS after start-up, as shipped and with the modules it
loads at the first run (quota, admission, forecast, timeline) imported at start instead.

Run: `python -m bench.worker_memory` (about a minute). A real NATS server and an initialised
home; the worker runs as its own process, as `koda service worker` starts it, and idles for a
few heartbeats before its RSS is read from /proc. The two ways alternate, `ROUNDS` times each,
in the same run; the median is reported. The whole stack's idle memory is
`bench/stack_memory.py`'s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._worker_common import save
from bench.stack_memory import memory_kb
from koda.shared.home import init_home
from koda.shared.settings import KodaSettings
from tests.fake_anthropic import API_KEY
from tests.natsserver import NatsServer, free_port_block

ROUNDS = 3
IDLE_S = 6.0
#: What the worker imported at start before they moved to its first run.
EAGER = ("import sys; sys.modules.setdefault('aiohttp', None)\n"
         "import koda.services.worker.quota, koda.services.worker.timeline\n")
START = "from koda.shared.launch import run_named\nrun_named('worker')\n"


def idle_rss(root: Path, nats_url: str, preload: str) -> float:
    env = {**os.environ, "KODA_HOME": str(root / "home"), "KODA_STATE_DIR": str(root / "state"),
           "KODA_NATS_URL": nats_url, "KODA_PORT_BASE": str(free_port_block(7) - 1),
           "ANTHROPIC_API_KEY": API_KEY, "HOME": str(root / "user")}
    proc = subprocess.Popen([sys.executable, "-c", preload + START], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(IDLE_S)
        assert proc.poll() is None, "the worker exited"
        return memory_kb(proc.pid)[0] / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "user").mkdir()
        nats = NatsServer(root / "nats")
        nats.start()
        try:
            init_home(KodaSettings(home=root / "home", state_dir=root / "state"))
            lazy, eager = [], []
            for _ in range(ROUNDS):
                lazy.append(idle_rss(root, nats.url, ""))
                eager.append(idle_rss(root, nats.url, EAGER))
        finally:
            nats.stop()
    result = {"rss_mb_lazy": round(statistics.median(lazy), 1),
              "rss_mb_eager": round(statistics.median(eager), 1),
              "saved_mb": round(statistics.median(eager) - statistics.median(lazy), 1),
              "lazy": [round(x, 1) for x in lazy], "eager": [round(x, 1) for x in eager]}
    print(f"worker idle RSS: {result['rss_mb_lazy']} MB as shipped (quota and timeline at the "
          f"first run), {result['rss_mb_eager']} MB with them imported at start")
    save("worker_memory", result)


if __name__ == "__main__":
    main()
