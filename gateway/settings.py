"""Install settings from BEACON_* environment variables (pydantic-settings).

These say how the process runs (listen address, config path, logs, admin token) and
need a restart to change. Routing lives in the TOML config (gateway/config.py), not here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LISTEN = "127.0.0.1:11434"


def split_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' or '[v6]:PORT' -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BEACON_", extra="ignore")

    listen: str = DEFAULT_LISTEN
    config: str = "config.toml"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Bearer token for /admin/*; unset disables the admin API. Never logged, never echoed.
    admin_token: SecretStr | None = None
    # Bearer token for /metrics; unset leaves /metrics open (as Prometheus scrapes usually are).
    metrics_token: SecretStr | None = None
    # Connection limits (per process): past max_connections new connections get 503 and are closed;
    # a connection that sends no complete request head within header_timeout_s, or sits idle
    # between requests for idle_timeout_s, is closed (slow-loris clients hold nothing for long).
    max_connections: int = Field(4096, ge=1)
    header_timeout_s: float = Field(10.0, gt=0)
    idle_timeout_s: float = Field(60.0, gt=0)
    max_header_bytes: int = Field(16384, ge=1024)

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)
