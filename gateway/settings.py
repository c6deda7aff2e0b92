"""Install settings from BEACON_* environment variables (pydantic-settings).

These say how the process runs (listen address, config path, logs, admin token) and
need a restart to change. Routing lives in the TOML config (gateway/config.py), not here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.cors import parse_origins

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
    # Listening on a loopback address, only requests whose Host names this machine are answered (the
    # DNS-rebinding guard, as Ollama's): comma-separated extra names ("gw.example.com", "*.corp.example")
    # for a local proxy that passes another Host on; "*" turns the check off. Unused on other addresses.
    allowed_hosts: str = ""
    # Web pages that may call the gateway from a browser (CORS), besides Ollama's defaults (gateway/cors.py):
    # comma-separated origins, one "*" each ("https://*.example.com", "chrome-extension://*"), "*" for all.
    # Set, even empty, it replaces OLLAMA_ORIGINS (one inherited from an Ollama install); unset, that counts.
    origins: str | None = None
    ollama_origins: str = Field("", validation_alias=AliasChoices("OLLAMA_ORIGINS", "ollama_origins"))

    # Replicas and processes share live state through this Redis (claims, cold loads, sessions,
    # ejections, drains, client limits); unset, this process decides alone and needs no Redis.
    # `redis://host:6379/0`, `rediss://...` or `unix:///path/redis.sock`. Never logged whole.
    redis_url: SecretStr | None = None
    redis_prefix: str = Field("beacon:", min_length=1, max_length=64)  # keys of one gateway fleet
    redis_sync_s: float = Field(0.1, gt=0, le=5)  # how often each replica publishes and reads the others
    redis_lease_s: float = Field(3.0, gt=0, le=60)  # a dead replica's claims count for at most this long

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @field_validator("origins", "ollama_origins")
    @classmethod
    def _valid_origins(cls, value: str | None) -> str | None:
        if value is not None:
            parse_origins(value)  # a bad entry stops start-up, as it stops Ollama's
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)

    @property
    def extra_hosts(self) -> tuple[str, ...]:
        return tuple(name.strip().lower().rstrip(".") for name in self.allowed_hosts.split(",") if name.strip())

    @property
    def extra_origins(self) -> tuple[str, ...]:
        return parse_origins(self.origins if self.origins is not None else self.ollama_origins)
