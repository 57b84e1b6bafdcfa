"""One settings object for every Koda process, read from the environment and `.env`.

Services receive a `KodaSettings` instance; nothing reads the environment behind its back.
"""

from __future__ import annotations

import math
import os
import string
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Service names, in start order; each has a folder under services/ and a port offset.
SERVICES: tuple[str, ...] = ("scheduler", "worker", "actions", "scraper", "gateway", "watchdog")

#: Where this checkout lives (the template home and built-in skills sit beside the package).
SOURCE_DIR = Path(__file__).resolve().parent.parent


#: The least guessing resistance a chosen console token may have outside development.
MIN_TOKEN_BITS = 128


def token_bits(token: str) -> float:
    """A generous estimate of a token's entropy: length times log2 of the alphabet its character
    classes span (a random token over that alphabet has exactly this much)."""
    alphabet = sum(size for chars, size in ((string.ascii_lowercase, 26), (string.ascii_uppercase, 26),
                                            (string.digits, 10)) if any(c in chars for c in token))
    if any(not c.isalnum() for c in token):
        alphabet += 32
    # A token of few distinct characters (`aaaa...`, `abab...`) is not random over its alphabet.
    alphabet = min(alphabet, len(set(token)) ** 2) if len(set(token)) < 16 else alphabet
    return len(token) * math.log2(max(alphabet, 2))
def config_file() -> Path:
    """The one file of `KODA_*` settings that every way of starting Koda reads (`./dev up`,
    `koda up`, `koda service X`, every `koda` command): `$KODA_CONFIG_FILE`, else
    `$XDG_CONFIG_HOME/koda/koda.env` (`~/.config/koda/koda.env`). The environment wins over it;
    compose passes settings as environment variables. Credentials for scripts and the Claude
    connection stay in the agent home's `.env`."""
    explicit = os.environ.get("KODA_CONFIG_FILE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser() / "koda" / "koda.env"


class KodaSettings(BaseSettings):
    """Everything a Koda process needs to know, from `KODA_*` variables or the config file
    (`config_file()`)."""

    model_config = SettingsConfigDict(
        env_prefix="KODA_", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
    )

    def __init__(self, **values: Any) -> None:
        values.setdefault("_env_file", config_file())
        super().__init__(**values)

    home: Path = Field(default=Path("~/.koda"), description="The agent home (soul, tasks, data).")
    state_dir: Path = Field(
        default=Path("~/.local/state/koda"),
        description="Runtime state outside the agent's reach: NATS store, supervisord, logs.",
    )
    source_dir: Path = Field(default=SOURCE_DIR, description="Checkout holding volumes/ and skills/.")
    nats_url: str = Field(default="nats://127.0.0.1:4222", description=(
        "NATS to connect to; several comma-separated for a cluster (the client tries each)."))
    nats_replicas: int = Field(default=1, ge=1, le=5, description=(
        "JetStream replicas of each stream and bucket Koda creates: 3 on a three-node cluster "
        "(compose.cluster.yaml). Applies when they are created; existing ones keep theirs."))
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_port: int = 4222
    port_base: int = Field(default=8100, description="Service i listens on port_base + 1 + i.")
    http_host: str = "127.0.0.1"
    service_host: str = Field(
        default="127.0.0.1", description="Where one service reaches another's HTTP port (the "
        "watchdog's probes); `{service}` is replaced by the service's name, as in compose.")
    log_level: str = "INFO"
    timezone: str = "UTC"
    instance: str = Field(default="", description="Instance id; defaults to host and pid.")
    heartbeat_interval: float = Field(default=2.0, gt=0)
    heartbeat_ttl: float = Field(default=10.0, gt=0, description="Health KV entries expire after this.")
    drain_timeout: float = Field(default=20.0, ge=0, description="SIGTERM waits this long for work.")
    max_deliver: int = Field(default=5, ge=1, description="Deliveries before a message is failed.")
    events_max_age_days: int = 30
    transcript_max_age_days: float = Field(
        default=30.0, gt=0, description="Run transcripts (state dir) are deleted after this.")
    env: str = Field(default="development", description="development or production.")
    scheduler_leader_ttl: float = Field(
        default=10.0, gt=0, description="A scheduler leader lock not renewed for this long is taken over.")
    scheduler_reload_interval: float = Field(
        default=1.0, gt=0, description="How often the scheduler looks at tasks.json's mtime.")
    # Watchdog
    watchdog_poll_interval: float = Field(default=0.2, gt=0, description="How often it looks.")
    watchdog_verify_delay: float = Field(default=30.0, ge=0, description="Re-check after a fix.")
    crash_loop_restarts: int = Field(default=3, ge=1, description="N restarts in the window...")
    self_heal_per_hour: int = Field(default=2, ge=0, description="Most self-heal agent runs an hour.")
    self_heal_spend_day_usd: float = Field(default=2.0, ge=0,
                                           description="Self-heal agent spend cap per day.")
    crash_loop_window: float = Field(default=300.0, gt=0, description="...of M seconds: a loop.")
    # Actions and scraper
    chromium_path: Path = Field(default=Path("/usr/bin/chromium"),
                                description="Chromium for Playwright (the image's own in Docker).")
    scraper_idle_close: float = Field(default=60.0, ge=0,
                                      description="Close the idle browser after this many seconds.")
    action_refresh_timeout: float = Field(default=120.0, gt=0,
                                          description="How long a script's cookie refresh may take.")
    # Gateway: Discord bot (off without a token) and web console
    discord_token: SecretStr | None = Field(default=None, description="Bot token; unset = bot off.")
    discord_guild: int | None = Field(default=None, description="Guild for slash commands.")
    discord_approvals_channel: int | None = None
    discord_reports_channel: int | None = None
    discord_alerts_channel: int | None = None
    discord_approvers: str = Field(default="", description="Comma-separated user ids who may decide.")
    discord_owner: int | None = Field(default=None, description="User whose messages start chat runs.")
    discord_chat_channel: int | None = Field(default=None, description="Channel for owner chat.")
    discord_api_base: str | None = Field(default=None, description="Override of Discord's REST URL.")
    discord_gateway_url: str | None = Field(default=None, description="Override of the gateway URL.")
    console_port: int | None = Field(default=None, description="Web console port; port_base + 10.")
    console_token: SecretStr | None = Field(default=None, description="Console login token.")
    approval_signing_key: SecretStr | None = Field(
        default=None, description="Gateway only: Ed25519 private key (base64) that signs every "
        "approval decision; `koda up` generates one, `koda keys` prints a pair for compose.")
    approval_verify_key: str | None = Field(
        default=None, description="Actions and the worker: the matching public key (base64); "
        "gated scripts, action kinds and paused tool calls run only for a decision signed with "
        "its private key.")
    approval_sweep_interval: float = Field(default=15.0, gt=0, description="Expiry check period.")
    digest_hour: int = Field(default=20, ge=0, le=23, description="Daily digest hour (timezone).")
    chat_task: str = Field(default="chat", description="Task id that owner chat runs use.")
    # Worker: the Claude connection (standard Claude Code names; also read from the home's .env)
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "KODA_ANTHROPIC_BASE_URL"),
        description="API endpoint, e.g. a proxy or gateway in front of Anthropic.")
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "KODA_ANTHROPIC_API_KEY"))
    claude_code_oauth_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CLAUDE_CODE_OAUTH_TOKEN", "KODA_CLAUDE_CODE_OAUTH_TOKEN"),
        description="Subscription token from `claude setup-token`.")
    model: str | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_MODEL", "KODA_MODEL"),
        description="Model for agent sessions; unset = the CLI's default.")
    worker_concurrency: int = Field(default=2, ge=1, description="Sessions one worker runs at once.")
    worker_ack_wait: float = Field(default=30.0, gt=0,
                                   description="A run not acked (progress) this long is redelivered.")
    claude_max_retries: int = Field(default=1, ge=0,
                                    description="CLAUDE_CODE_MAX_RETRIES: the CLI's own API retries.")
    rate_limit_backoff: float = Field(default=300.0, gt=0,
                                      description="Pause after a 429 that names no reset time.")
    rate_limit_jitter: float = Field(default=30.0, ge=0,
                                     description="Re-queued runs spread over this many seconds.")
    spend_cap_day_usd: float | None = Field(default=None, gt=0, description="Daily spend cap.")
    spend_cap_month_usd: float | None = Field(default=None, gt=0, description="Monthly spend cap.")
    # Budget policy (admission before a run; see docs/quota.md)
    credit_month_usd: float | None = Field(
        default=None, gt=0, description="Monthly credit (e.g. the Agent SDK credit); unset = none.")
    credit_extra_usage: bool = Field(
        default=False, description="Extra usage is on: runs may go past the monthly credit (billed "
        "at API rates) up to the month cap. Off: the credit is a hard stop, as the provider's is.")
    reserve_usd: float = Field(
        default=0.0, ge=0, description="Kept for critical and chat runs: others stop short of it.")
    admission_utilization: float = Field(
        default=0.8, gt=0, le=1, description="Window utilization from which runs are held back.")
    admission_reduced_turns: int = Field(
        default=8, ge=1, description="Turn cap of a normal run admitted under a tight budget.")
    worker_tool_timeout: float = Field(default=300.0, gt=0,
                                       description="How long run_script and scrape wait for a reply.")
    claude_sandbox: bool = Field(
        default=True, description="Run the agent's Bash in the CLI's bubblewrap sandbox, where .env and "
        "cookies are unreadable whatever the command (about 0.3 s per session; needs bwrap and socat).")

    @model_validator(mode="after")
    def _clients_follow_the_port(self) -> KodaSettings:
        """`KODA_NATS_PORT` alone moves the server and every client with it."""
        if "nats_port" in self.model_fields_set and "nats_url" not in self.model_fields_set:
            self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        return self

    def expanded_home(self) -> Path:
        return self.home.expanduser().resolve()

    def expanded_state(self) -> Path:
        return self.state_dir.expanduser().resolve()

    def service_port(self, service: str) -> int:
        """Each service has its own /healthz and /metrics port, fixed by its place in SERVICES."""
        return self.port_base + 1 + SERVICES.index(service)

    def service_url(self, service: str, path: str) -> str:
        """The URL of `path` on a service's HTTP port, as another service reaches it."""
        host = self.service_host.replace("{service}", service)
        return f"http://{host}:{self.service_port(service)}{path}"

    def restarts_file(self) -> Path:
        return self.expanded_state() / "restarts.json"

    def log_dir(self) -> Path:
        return self.expanded_state() / "logs"

    @field_validator("discord_approvers")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        bad = [x for x in value.replace(" ", "").split(",") if x and not x.isdigit()]
        if bad:
            raise ValueError(f"Discord user ids are numbers, comma-separated; got {bad}")
        return value

    @model_validator(mode="after")
    def _strong_console_token(self) -> KodaSettings:
        """A chosen console token must resist guessing: 128 bits outside development."""
        token = self.console_token.get_secret_value() if self.console_token else ""
        if token and self.env != "development" and token_bits(token) < MIN_TOKEN_BITS:
            raise ValueError(
                f"KODA_CONSOLE_TOKEN holds about {token_bits(token):.0f} bits; at least {MIN_TOKEN_BITS} are "
                "needed outside development. Generate one with: python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))', or unset it to have the gateway generate one")
        return self

    def approver_ids(self) -> set[int]:
        """The Discord user ids on the approver allowlist."""
        return {int(x) for x in self.discord_approvers.replace(" ", "").split(",") if x}

    def console_listen_port(self) -> int:
        return self.console_port or self.port_base + 10
