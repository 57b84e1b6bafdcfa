"""Debian's Prometheus scraping a whole local stack with the shipped rules: every metric the
dashboard and the alerts query is served, a run shows up in PromQL, a restart is counted, and
stopping a service fires the service-down alert."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from koda.shared.bus import Bus
from koda.shared.messages import RunRequest
from koda.shared.settings import SERVICES
from tests.deploy.artifacts import PROMETHEUS_DIR, RULES_FILE, queried_metrics
from tests.fake_anthropic import API_KEY, FakeAnthropic, say
from tests.natsserver import free_port_block
from tests.stack import Stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="Debian's prometheus is missing: apt-get install prometheus (./dev test does)"),
]
RUN_TASK = "deploy-probe"


class Prometheus:
    """A local Prometheus with the shipped scrape job and rules, retargeted at a stack."""

    def __init__(self, root: Path, stack: Stack) -> None:
        self.root = root
        self.port = free_port_block(1)
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        # Seconds instead of minutes, so a test sees scrapes and alerts quickly.
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "900ms",
                            "evaluation_interval": "1s"}
        koda = next(job for job in config["scrape_configs"] if job["job_name"] == "koda")
        # The local stack runs one worker: its DNS-found replicas become one static target.
        for found in koda.pop("dns_sd_configs"):
            koda["static_configs"] += [{"targets": [], "labels": {"instance": name}}
                                       for name in found["names"]]
        koda.pop("relabel_configs")
        for group in koda["static_configs"]:
            name = group["labels"]["instance"]
            group["targets"] = [f"127.0.0.1:{stack.port(name)}"]
        config["scrape_configs"] = [koda]
        rules = yaml.safe_load(RULES_FILE.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
        (root / "rules.yml").write_text(yaml.safe_dump(rules))
        config["rule_files"] = [str(root / "rules.yml")]
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(root / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}",
             f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query; one value per series, keyed by its labels as `k=v,k=v`."""
        out = {}
        for item in self.api("query", query=expr)["result"]:
            labels = ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items()) if k != "__name__")
            out[labels] = float(item["value"][1])
        return out

    def wait(self, predicate: Any, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except OSError:
                last = None
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"not within {timeout}s; last saw {last!r}\n"
                             + (self.root / "prometheus.log").read_text()[-2000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def fake_api() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(say("probe done")) as api:
        yield api


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_api: FakeAnthropic) -> Iterator[Stack]:
    """The local stack with its worker on the fake Anthropic API."""
    root = tmp_path_factory.mktemp("scrape")
    (root / "user").mkdir()
    running = Stack(root, extra_env={"ANTHROPIC_BASE_URL": fake_api.url,
                                     "ANTHROPIC_API_KEY": API_KEY, "HOME": str(root / "user")})
    running.up()
    try:
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), stack)
    try:
        server.wait(lambda: len(server.query('up{job="koda"} == 1')) == len(SERVICES), timeout=40)
        yield server
    finally:
        server.stop()


def served_metric_families(stack: Stack) -> set[str]:
    names = set()
    for service in SERVICES:
        _, text = stack.http(service, "/metrics")
        names |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return names


def test_every_metric_the_dashboard_and_alerts_query_is_served(stack: Stack) -> None:
    missing = queried_metrics() - served_metric_families(stack)
    assert not missing, f"queried by volumes/ but served by no service: {sorted(missing)}"


def test_prometheus_scrapes_every_service_of_the_stack(prometheus: Prometheus) -> None:
    up = prometheus.query('up{job="koda"}')
    assert {k.split("instance=")[1].split(",")[0] for k in up} == set(SERVICES)
    assert set(up.values()) == {1.0}
    service_up = prometheus.query("koda_service_up")
    assert len(service_up) == len(SERVICES) and set(service_up.values()) == {1.0}


async def run_probe_task(stack: Stack) -> None:
    """Queue one manual run of a probe task on the stack."""
    tasks = stack.home / "tasks.json"
    data = json.loads(tasks.read_text())
    data["tasks"] = [t for t in data.get("tasks", []) if t.get("id") != RUN_TASK]
    data["tasks"].append({"id": RUN_TASK, "prompt": "Say that the probe is done."})
    tasks.write_text(json.dumps(data, indent=1))
    now = datetime.now(UTC)
    request = RunRequest(task=RUN_TASK, run_id=f"{RUN_TASK}.m{int(now.timestamp() * 1000)}",
                         scheduled_for=now, trigger="manual")
    bus = await Bus.connect(stack.settings, "test", timeout=10)
    try:
        await bus.publish(f"koda.runs.{RUN_TASK}", request, msg_id=request.run_id)
    finally:
        await bus.close()


async def test_after_a_run_promql_returns_it(stack: Stack, prometheus: Prometheus,
                                             fake_api: FakeAnthropic) -> None:
    await run_probe_task(stack)
    runs = prometheus.wait(lambda: prometheus.query(f'koda_runs_total{{task="{RUN_TASK}"}}'),
                           timeout=60)
    assert runs == {f"instance=worker,job=koda,outcome=done,task={RUN_TASK}": 1.0}, stack.logs("worker")
    assert fake_api.main_calls(), "the run reached the (fake) Anthropic API"
    count = prometheus.query(f'koda_run_duration_seconds_count{{task="{RUN_TASK}"}}')
    assert list(count.values()) == [1.0]


def test_a_killed_service_is_restarted_and_counted_in_promql(stack: Stack,
                                                            prometheus: Prometheus) -> None:
    expr = 'koda_service_restarts_total{service="actions"}'
    before = sum(prometheus.query(expr).values())
    old_pid = stack.pid("actions")
    os.kill(old_pid, signal.SIGKILL)
    stack.wait_for(lambda: stack.pid("actions") not in (0, old_pid), timeout=30)
    prometheus.wait(lambda: sum(prometheus.query(expr).values()) == before + 1)
    # Under compose nobody counts restarts; the crash-loop alert also sees a new start time.
    changes = 'changes(koda_service_start_time_seconds{service="actions"}[5m])'
    prometheus.wait(lambda: sum(prometheus.query(changes).values()) >= 1)


def test_stopping_a_service_fires_the_service_down_alert(stack: Stack,
                                                         prometheus: Prometheus) -> None:
    def firing() -> list[dict[str, Any]]:
        return [a for a in prometheus.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "KodaServiceDown" and a["state"] == "firing"]

    # A service killed by an earlier test may still count as down for a scrape or two.
    prometheus.wait(lambda: not firing(), timeout=30)
    stack.supervisorctl("stop", "scraper")
    try:
        alerts = prometheus.wait(firing, timeout=30)
        assert [a["labels"]["instance"] for a in alerts] == ["scraper"]
        assert alerts[0]["annotations"]["summary"] == "scraper is down"
    finally:
        stack.supervisorctl("start", "scraper")
    prometheus.wait(lambda: not firing(), timeout=30)


#: What Grafana puts in for its variables, for a 1 s scrape and a 10-minute range.
GRAFANA_VALUES = {"$__rate_interval": "1m", "$__range": "600s", "$__interval": "15s"}


def grafana_result(prometheus: Prometheus, target: dict[str, Any]) -> dict[str, Any]:
    """Run a panel query the way Grafana's Prometheus datasource does: instant or range."""
    expr = target["expr"]
    for var, value in GRAFANA_VALUES.items():
        expr = expr.replace(var, value)
    now = time.time()
    if target.get("instant"):
        data: dict[str, Any] = prometheus.api("query", query=expr, time=f"{now:.3f}")
    else:
        data = prometheus.api("query_range", query=expr, start=f"{now - 600:.3f}",
                              end=f"{now:.3f}", step="15")
    return data


async def test_every_dashboard_panel_renders_with_the_frame_shape_its_panel_expects(
        stack: Stack, prometheus: Prometheus) -> None:
    """Each panel's queries against the live Prometheus: the result type its panel needs, one
    set of columns for a table, and every label its legend names present in every series."""
    from tests.deploy.artifacts import DASHBOARD

    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p.get("targets")]
    if not prometheus.query("koda_runs_total"):
        await run_probe_task(stack)  # so the run panels have something to show
    # A counter that just appeared has one sample: increase() needs two scrapes of it.
    prometheus.wait(lambda: prometheus.query("increase(koda_runs_total[1m])"), timeout=60)
    with_data = set()
    for panel in panels:
        for target in panel["targets"]:
            where = f"panel {panel['id']} ({panel['title']}) / {target['refId']}"
            data = grafana_result(prometheus, target)
            series = data["result"]
            if panel["type"] in ("table", "stat"):
                assert data["resultType"] == "vector", where
            else:
                assert data["resultType"] == "matrix", where
            labels = [{k for k in s["metric"] if k != "__name__"} for s in series]
            if panel["type"] == "table":
                # Grafana's table format joins the series into one frame: Time, one column per
                # label, Value; the series must agree on their labels, and carry the grouping.
                by = set(re.findall(r"by \(([^)]*)\)", target["expr"])[0].replace(" ", "").split(","))
                assert all(ls == labels[0] for ls in labels), where
                assert not series or by <= labels[0], where
            legend = set(re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat") or ""))
            assert all(legend <= ls for ls in labels), f"{where}: legend {legend}, series {labels}"
            if series:
                with_data.add(panel["id"])
    # The stack ran a task and every service is up: these panels must show something.
    assert {2, 5, 6, 15, 27} <= with_data, with_data
