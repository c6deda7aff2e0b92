"""`beacon-gateway serve`: load settings and config, run the gateway until a signal.

A config that does not validate stops start-up with every error listed (exit 2); an address
that cannot be bound, with one log line saying why and what to do (exit 1). SIGHUP reloads the
config (gateway/reload.py); SIGINT and SIGTERM stop the gateway, also while it starts (exit 0).
`--processes N` (N > 1) hands over to the supervisor (gateway/processes.py), which runs N of
these, each told its place through BEACON_PROCESS_* (gateway/siblings.py).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import structlog
from pydantic import ValidationError

from gateway import logs, runner
from gateway.app import build_app
from gateway.config import load_or_report
from gateway.context import GATEWAY
from gateway.listen import CannotListen, format_address
from gateway.settings import Settings
from gateway.siblings import SIBLINGS, Role, Siblings, attached

log = structlog.get_logger("gateway.serve")


def serve(config_path: str | None = None, listen: str | None = None, processes: int = 1) -> int:
    settings = load_settings(**{k: v for k, v in (("config", config_path), ("listen", listen)) if v})
    if settings is None:
        return 2
    try:
        role = Role.from_env() if processes == 1 else None
    except ValueError as exc:
        print(f"bad settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level, process=role.index if role else None)
    config = load_or_report(settings.config)
    if config is None:
        return 2
    if processes > 1:
        from gateway.processes import supervise

        return supervise(settings, processes)
    try:
        runner.run(lambda: _main(settings, config, role))
    except CannotListen as exc:
        log.error("gateway.cannot_listen", message=str(exc))
        return 1
    return 0


def load_settings(**overrides: str) -> Settings | None:
    """Settings from BEACON_* (and the command line), or None after one line per error on stderr."""
    values: dict[str, Any] = dict(overrides)  # text, as the environment's: Settings parses it into each field's type
    try:
        return Settings(**values)
    except ValidationError as exc:
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            name = f"--{key}" if key in overrides else f"BEACON_{key.upper()}".replace("BEACON_OLLAMA_", "OLLAMA_")
            print(f"bad settings: {name}: {error['msg']}", file=sys.stderr)
    except ValueError as exc:  # a value pydantic-settings could not even decode
        print(f"bad settings: {str(exc).splitlines()[0]}", file=sys.stderr)
    return None


async def _main(settings: Settings, config, role: Role | None) -> None:
    host, port = settings.host_port
    app = build_app(settings, config)
    if role is not None:
        app[SIBLINGS] = Siblings(role)
    limits = runner.ConnectionLimits(settings.max_connections, settings.header_timeout_s, settings.idle_timeout_s,
                                     settings.max_header_bytes)
    app_runner, bound = await runner.start(app, host, port, limits, reuse_port=role is not None)
    try:
        async with attached(app, role) if role else contextlib.nullcontext():
            log.info("gateway.listening", address=f"http://{format_address(host, bound)}", workers=len(config.workers),
                     config=settings.config, config_version=config.version,
                     admin_api="on" if settings.admin_token else "off (set BEACON_ADMIN_TOKEN)")
            await runner.until_signalled(on_hangup=lambda: app[GATEWAY].reloader.reload("SIGHUP"))
    finally:
        log.info("gateway.stopping")
        await app_runner.cleanup()
