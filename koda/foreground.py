"""The foreground `koda up`: supervisord as a child, the services' logs streamed coloured (as
`koda logs -f` shows them), and once every service is healthy the console's address and where
its token is. Ctrl-C stops the stack (supervisord gets it too) and the logs run to the end."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import Any

from koda.term import paint


def ready_banner(settings: Any, detached: bool = False) -> str:
    host = settings.http_host if settings.http_host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{settings.console_listen_port()}"
    token = ("the KODA_CONSOLE_TOKEN you set" if settings.console_token
             else f"in {settings.expanded_state() / 'console-token'}")
    stop = "`koda down`" if detached else "Ctrl-C"
    return (paint("Koda is up: every service is healthy.", "bright_green") + "\n"
            f"  console  {paint(url, 'bold')}  (log in with the token {token})\n"
            f"  logs     koda logs -f · runs  koda runs · status  koda status · stop  {stop}")


def run_foreground(settings: Any, command: list[str], wait: float) -> int:
    from koda import stack
    from koda.logs_command import all_services, follow, render
    from koda.shared.health import heartbeat_ages_sync
    from koda.term import colour_on

    log_dir = settings.log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    # supervisord's own lines stay in its log file; the services' lines are what a person reads.
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    print(paint(f"starting; logs in {log_dir}", "grey"), flush=True)

    def announce() -> None:
        ok = stack.wait_healthy(settings, lambda: heartbeat_ages_sync(settings, 1.0), wait)
        if proc.poll() is not None:
            return
        if ok:
            print(ready_banner(settings), flush=True)
        else:
            print(paint(f"not every service is healthy after {wait:.0f}s; `koda status` says "
                        "which", "red"), file=sys.stderr, flush=True)

    threading.Thread(target=announce, daemon=True).start()
    services = all_services()
    width, colour = max(len(s) for s in services), colour_on()
    interrupted = 0
    while True:
        try:
            for entry in follow(log_dir, services, stop=lambda: proc.poll() is not None):
                print(render(entry, width, colour), flush=True)
            break
        except KeyboardInterrupt:
            interrupted += 1
            if interrupted == 1:
                proc.send_signal(signal.SIGTERM)  # also when the Ctrl-C reached only us
                print(paint("stopping every service (Ctrl-C again to stop waiting)", "yellow"),
                      flush=True)
                continue
            proc.terminate()
            break
    return proc.wait()
