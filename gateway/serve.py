"""`beacon-gateway serve`: load settings and config, run the gateway until a signal.

A config that does not validate stops start-up with every error listed (exit 2). SIGHUP
reloads the config (gateway/reload.py); SIGINT and SIGTERM stop the gateway.
"""

from __future__ import annotations

import sys

import structlog

from gateway import logs, runner
from gateway.app import build_app
from gateway.config import load_or_report
from gateway.context import GATEWAY
from gateway.settings import Settings

log = structlog.get_logger("gateway.serve")


def serve(config_path: str | None = None, listen: str | None = None) -> int:
    overrides = {k: v for k, v in (("config", config_path), ("listen", listen)) if v}
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        print(f"bad settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    config = load_or_report(settings.config)
    if config is None:
        return 2
    runner.run(lambda: _main(settings, config))
    return 0


async def _main(settings: Settings, config) -> None:
    host, port = settings.host_port
    app = build_app(settings, config)
    limits = runner.ConnectionLimits(settings.max_connections, settings.header_timeout_s, settings.idle_timeout_s,
                                     settings.max_header_bytes)
    app_runner, bound = await runner.start(app, host, port, limits)
    log.info("gateway.listening", address=f"http://{host}:{bound}", workers=len(config.workers),
             config=settings.config, config_version=config.version,
             admin_api="on" if settings.admin_token else "off (set BEACON_ADMIN_TOKEN)")
    try:
        await runner.until_signalled(on_hangup=lambda: app[GATEWAY].reloader.reload("SIGHUP"))
    finally:
        log.info("gateway.stopping")
        await app_runner.cleanup()
