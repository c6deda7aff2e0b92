"""Install settings from BEACON_* environment variables (pydantic-settings).

These say how the process runs (listen address, config path, logs, admin token) and
need a restart to change. Routing lives in the TOML config (gateway/config.py), not here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, field_validator
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

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)
