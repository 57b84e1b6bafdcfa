"""Prometheus config, alert rules and the Grafana dashboard: valid for their tools, pointed at
the right ports and paths, and querying only the metrics of docs/contracts.md."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from koda.shared.settings import SERVICES, KodaSettings
from tests.deploy.artifacts import (
    DASHBOARD,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    RULES_FILE,
    as_promql,
    compose_model,
    contract_metrics,
    dashboard_exprs,
    queried_metrics,
    rule_exprs,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: apt-get install prometheus (./dev test does)")
ALERTS_TEST = Path(__file__).with_name("alerts_test.yml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


@needs_promtool
def test_prometheus_config_and_rules_pass_promtool_check() -> None:
    config = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout
    rules = promtool("check", "rules", str(RULES_FILE))
    assert rules.returncode == 0, rules.stdout + rules.stderr


@needs_promtool
def test_each_alert_fires_on_its_condition_and_not_otherwise() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    assert {"KodaServiceDown", "KodaCrashLoop", "KodaMissedCronFires", "KodaRateLimitPaused",
            "KodaApprovalWaitingTooLong", "KodaSpendNearCap", "KodaSiteNeedsHuman"} <= set(rule_exprs())


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query, as a recording rule, goes through Prometheus's own parser."""
    exprs = dashboard_exprs()
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs.values())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    titles = list(exprs)
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n(query_N is {titles})"


def test_rules_and_dashboard_use_only_contract_metrics() -> None:
    unknown = queried_metrics() - contract_metrics()
    assert not unknown, f"not in docs/contracts.md's Metrics table: {sorted(unknown)}"


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    text = " ".join(dashboard_exprs().values())
    for metric in ("koda_runs_total", "koda_run_duration_seconds_bucket", "koda_run_turns_bucket",
                   "koda_run_cost_usd_total", "koda_scheduler_fire_lateness_seconds_bucket",
                   "koda_service_restarts_total", "koda_approvals_pending",
                   "koda_approval_wait_seconds_bucket", "koda_rate_limit_paused",
                   "koda_scraper_cookie_age_seconds"):
        assert metric in text, metric


def test_dashboard_panels_have_unique_ids_and_never_overlap() -> None:
    """Grafana keys panel state by id and silently stacks overlapping panels."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_grafana_provisioning_matches_compose_and_the_dashboard() -> None:
    datasource = _yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {datasource["uid"]}
    model = compose_model()
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in model["services"]
    provider = _yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "koda.yml")["providers"][0]
    mounts = {v["target"]: v["source"] for v in model["services"]["grafana"]["volumes"]}
    assert Path(mounts[provider["options"]["path"]]) == GRAFANA_DIR / "dashboards"
    assert Path(mounts["/etc/grafana/provisioning"]) == GRAFANA_DIR / "provisioning"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = _yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "koda")
    targets = {g["labels"]["instance"]: g["targets"] for g in job["static_configs"]}
    # Workers scale out: found by their compose name in DNS, each replica scraped.
    for found in job["dns_sd_configs"]:
        (name,) = found["names"]
        targets[name] = [f"{name}:{found['port']}"]
    port_base = int(compose_model()["services"]["worker"]["environment"]["KODA_PORT_BASE"])
    settings = KodaSettings(port_base=port_base)
    assert targets == {name: [f"{name}:{settings.service_port(name)}"] for name in SERVICES}
    mounts = {v["target"]: v["source"] for v in compose_model()["services"]["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus"]) == PROMETHEUS_DIR


def _panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p.get("targets")]


def expected_unit(expr: str) -> str:
    """The unit a query's numbers are in, from the metric it reads and what it does to it."""
    if "/ 86400" in expr:
        return "d"
    if "_usd" in expr:
        return "currencyUSD"
    if "utilization" in expr:
        return "percentunit"  # a 0..1 ratio
    counted = expr.lstrip().startswith(("changes(", "max by (service) (changes("))
    if "_seconds" in expr and not counted and "increase(" not in expr:
        return "s"
    return "short"


def test_each_panel_has_one_unit_and_every_query_is_in_it() -> None:
    for panel in _panels():
        config = panel.get("fieldConfig", {})
        unit = config.get("defaults", {}).get("unit")
        assert unit, f"panel {panel['id']} ({panel['title']}) declares no unit"
        overridden = [p for o in config.get("overrides", []) for p in o.get("properties", [])
                      if p.get("id") == "unit"]
        assert not overridden, f"panel {panel['id']} mixes units on one axis"
        wrong = {t["refId"]: expected_unit(t["expr"]) for t in panel["targets"]
                 if expected_unit(t["expr"]) != unit}
        assert not wrong, f"panel {panel['id']} ({panel['title']}) is in {unit}, but {wrong}"


def test_each_query_is_formatted_for_its_panel_type() -> None:
    for panel in _panels():
        for target in panel["targets"]:
            where = f"panel {panel['id']} ({panel['title']}) / {target['refId']}"
            if panel["type"] == "table":
                # One frame with a column per label; a time-series format would give one
                # frame per series and the table would show one at a time.
                assert target.get("format") == "table", where
                assert target.get("instant") is True and target.get("range") is False, where
            elif panel["type"] == "stat":
                assert target.get("instant") is True, where
            else:
                assert target.get("format", "time_series") == "time_series", where
                assert not target.get("instant"), where
