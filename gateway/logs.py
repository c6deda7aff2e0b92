"""structlog set-up: JSON lines by default, readable console output on a terminal.

Request context (request id, model) is bound through contextvars by the handlers, so
every line a request causes carries it. No other module configures logging.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure(log_format: str = "auto", level: str = "info") -> None:
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    # JSON lines are rendered by orjson straight to bytes: one request.done line per request is hot.
    renderer = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer(orjson.dumps)
    factory = structlog.PrintLoggerFactory(file=sys.stderr) if console else structlog.BytesLoggerFactory(
        file=sys.stderr.buffer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
