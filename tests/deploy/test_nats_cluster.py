"""NATS as compose.cluster.yaml runs it: three nodes from the shipped cluster.conf, Koda's streams
and buckets replicated three ways. Killing the node that leads the RUNS stream while Koda's own
work-queue consumer takes runs loses none of them, and the cluster keeps taking new ones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from koda.shared.bus import Bus
from koda.shared.consumer import Delivery
from koda.shared.messages import RunRequest
from koda.shared.settings import SERVICES, KodaSettings
from koda.stack import nats_binary
from tests.deploy.artifacts import EXAMPLE_ENV, ROOT, compose_binary
from tests.natsserver import free_port_block
from tests.waits import eventually

CLUSTER_CONF = ROOT / "volumes" / "nats" / "cluster.conf"
ROUTE_PASSWORD = "route0secret0for0tests"


class Cluster:
    """Three nats-servers from cluster.conf on free loopback ports (flags move the ports; users,
    permissions, JetStream settings and route authorization are the shipped files')."""

    def __init__(self, root: Path) -> None:
        base = free_port_block(9)
        self.clients = [base + i for i in range(3)]
        routes = [base + 3 + i for i in range(3)]
        self.passwords = {name: f"pw-{name}-0" for name in SERVICES}
        env = {**os.environ, "KODA_NATS_ROUTE_PASSWORD": f'"{ROUTE_PASSWORD}"',
               **{f"KODA_NATS_PASSWORD_{n.upper()}": f'"{pw}"' for n, pw in self.passwords.items()}}
        solicit = ",".join(f"nats://route:{ROUTE_PASSWORD}@127.0.0.1:{port}" for port in routes)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for i in range(3):
            name = f"nats-{i + 1}"
            # The shipped files, but each node's store in its own folder (nats-server refuses a
            # store_dir given both in the file and on the command line).
            conf = root / name / "conf"
            conf.mkdir(parents=True)
            shipped = (CLUSTER_CONF.parent / "nats.conf").read_text()
            assert 'store_dir: "/koda/nats"' in shipped
            (conf / "nats.conf").write_text(
                shipped.replace('store_dir: "/koda/nats"', f'store_dir: "{root / name / "store"}"'))
            (conf / "cluster.conf").write_text(CLUSTER_CONF.read_text())
            with open(root / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
                self.procs[name] = subprocess.Popen(
                    [nats_binary(), "-c", str(conf / "cluster.conf"), "--server_name", name,
                     "-a", "127.0.0.1", "-p", str(self.clients[i]), "-m", str(base + 6 + i),
                     "--cluster", f"nats://127.0.0.1:{routes[i]}", "--routes", solicit],
                    stdout=log, stderr=log, env=env)
        self.root = root

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.clients)

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path)
    try:
        yield nodes
    finally:
        nodes.stop()


async def publish_run(bus: Bus, run_id: str) -> None:
    """Publish, retried with the same message id through a leader election: JetStream drops a
    repeat that did land, so a retry never queues a run twice."""
    request = RunRequest(task="t", run_id=run_id, scheduled_for=datetime.now(UTC), trigger="manual")
    for _ in range(20):
        try:
            await bus.publish("koda.runs.t", request, msg_id=run_id, timeout=2)
            return
        except Exception:
            await asyncio.sleep(0.5)
    raise AssertionError(f"could not queue {run_id}")


async def test_killing_the_runs_leader_loses_no_run(cluster: Cluster, tmp_path: Path) -> None:
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state",
                            nats_url=cluster.url, nats_user="worker",
                            nats_password=SecretStr(cluster.passwords["worker"]), nats_replicas=3)

    async def connected() -> Bus | None:
        try:  # the streams can be made once the three nodes have elected a meta leader
            return await Bus.connect(settings, "worker", timeout=5)
        except Exception:
            return None

    bus: Bus = await eventually(connected, timeout=60)
    handled: list[str] = []
    stop = asyncio.Event()
    in_flight: set[asyncio.Task[None]] = set()

    async def handle(delivery: Delivery[RunRequest]) -> None:
        await asyncio.sleep(0.1)  # a run in hand when the node goes
        handled.append(delivery.message.run_id)

    # The worker's own way to take runs (Bus.consume: the shared durable consumer, restarted
    # with a backoff when a fetch fails, as one does while the stream elects a new leader).
    consuming = asyncio.create_task(bus.consume(
        "RUNS", RunRequest, handle, stop=stop, filter_subject="koda.runs.>", concurrency=2,
        ack_wait=5, max_deliver=10, in_flight=in_flight))
    try:
        info = await bus.js.stream_info("RUNS")
        assert info.config.num_replicas == 3 and info.cluster is not None
        await bus.kv["runs"].put("before-the-kill", b"kept")
        before = [f"t.m{1700000000000 + i}" for i in range(10)]
        for run_id in before:
            await publish_run(bus, run_id)
        await eventually(lambda: len(handled) >= 3, timeout=30)

        leader = info.cluster.leader
        assert leader in cluster.procs, info.cluster
        cluster.kill(leader)
        after = [f"t.m{1700000001000 + i}" for i in range(10)]
        for run_id in after:
            await publish_run(bus, run_id)

        await eventually(lambda: set(handled) >= set(before + after), timeout=90)
        assert not consuming.done(), consuming
        new_leader = (await bus.js.stream_info("RUNS")).cluster
        assert new_leader is not None and new_leader.leader not in (None, leader)
        assert (await bus.kv["runs"].get("before-the-kill")).value == b"kept"
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 10)
        await bus.close()


def cluster_config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`compose config` of compose.yaml with compose.cluster.yaml over it."""
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), "-f", str(ROOT / "compose.yaml"),
         "-f", str(ROOT / "compose.cluster.yaml"), "config", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)})


def test_the_cluster_override_makes_three_nodes_every_service_uses(tmp_path: Path) -> None:
    env_file = tmp_path / "compose.env"
    env_file.write_text(EXAMPLE_ENV.read_text() + "KODA_NATS_ROUTE_PASSWORD=r0ute0pw\n")
    result = cluster_config(env_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    nodes = {name: services[name] for name in ("nats", "nats-2", "nats-3")}
    names = {node["command"][node["command"].index("--server_name") + 1] for node in nodes.values()}
    assert names == {"nats-1", "nats-2", "nats-3"}
    assert len({node["volumes"][0]["source"] for node in nodes.values()}) == 3
    assert [name for name, node in nodes.items() if "build" in node] == ["nats"]  # built once
    for node in nodes.values():
        assert node["command"][:3] == ["nats-server", "-c", "/etc/nats/cluster.conf"]
        assert node["environment"]["KODA_NATS_ROUTE_PASSWORD"] == '"r0ute0pw"'
        routes = node["command"][node["command"].index("--routes") + 1].split(",")
        assert routes == [f"nats://route:r0ute0pw@{n}:6222" for n in ("nats", "nats-2", "nats-3")]
    for name in (*SERVICES, "init"):
        env = services[name]["environment"]
        assert env["KODA_NATS_URL"].split(",") == [f"nats://{n}:4222" for n in ("nats", "nats-2", "nats-3")]
        assert env["KODA_NATS_REPLICAS"] == "3"
    # Without the route password compose refuses to start, naming it.
    bare = cluster_config(EXAMPLE_ENV, "-q")
    assert bare.returncode != 0 and "KODA_NATS_ROUTE_PASSWORD" in bare.stderr
