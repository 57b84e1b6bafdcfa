"""One settings object for every Koda process, read from the environment and `.env`.

Services receive a `KodaSettings` instance; nothing reads the environment behind its back.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Service names, in start order; each has a folder under services/ and a port offset.
SERVICES: tuple[str, ...] = ("scheduler", "worker", "actions", "scraper", "gateway", "watchdog")

#: Where this checkout lives (the template home and built-in skills sit beside the package).
SOURCE_DIR = Path(__file__).resolve().parent.parent


class KodaSettings(BaseSettings):
    """Everything a Koda process needs to know, from `KODA_*` variables or a `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="KODA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(default=Path("~/.koda"), description="The agent home (soul, tasks, data).")
    state_dir: Path = Field(
        default=Path("~/.local/state/koda"),
        description="Runtime state outside the agent's reach: NATS store, supervisord, logs.",
    )
    source_dir: Path = Field(default=SOURCE_DIR, description="Checkout holding volumes/ and skills/.")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_port: int = 4222
    port_base: int = Field(default=8100, description="Service i listens on port_base + 1 + i.")
    http_host: str = "127.0.0.1"
    log_level: str = "INFO"
    timezone: str = "UTC"
    instance: str = Field(default="", description="Instance id; defaults to host and pid.")
    heartbeat_interval: float = Field(default=2.0, gt=0)
    heartbeat_ttl: float = Field(default=10.0, gt=0, description="Health KV entries expire after this.")
    drain_timeout: float = Field(default=20.0, ge=0, description="SIGTERM waits this long for work.")
    max_deliver: int = Field(default=5, ge=1, description="Deliveries before a message is failed.")
    events_max_age_days: int = 30
    env: str = Field(default="development", description="development or production.")
    # Watchdog
    watchdog_poll_interval: float = Field(default=0.2, gt=0, description="How often it looks.")
    watchdog_verify_delay: float = Field(default=30.0, ge=0, description="Re-check after a fix.")
    crash_loop_restarts: int = Field(default=3, ge=1, description="N restarts in the window...")
    crash_loop_window: float = Field(default=300.0, gt=0, description="...of M seconds: a loop.")

    def expanded_home(self) -> Path:
        return self.home.expanduser().resolve()

    def expanded_state(self) -> Path:
        return self.state_dir.expanduser().resolve()

    def service_port(self, service: str) -> int:
        """Each service has its own /healthz and /metrics port, fixed by its place in SERVICES."""
        return self.port_base + 1 + SERVICES.index(service)

    def restarts_file(self) -> Path:
        return self.expanded_state() / "restarts.json"

    def log_dir(self) -> Path:
        return self.expanded_state() / "logs"
