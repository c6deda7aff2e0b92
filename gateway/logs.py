"""structlog set-up: JSON lines by default, readable console output on a terminal.

Request context (request id, model) is bound through contextvars by the handlers, so
every line a request causes carries it. No other module configures logging.

What other libraries log through the standard `logging` module (aiohttp's server, client and
access loggers, asyncio's "exception in callback", warnings, an uncaught exception) goes through
structlog's ProcessorFormatter into the same stream, one line per event, in the same format.
Those lines never carry a request head: aiohttp's parse errors quote the raw head lines they
choke on (an `Authorization` header among them), so only their class and status are kept, and
every string in a foreign line is clipped, since it may hold what a client sent.
"""

from __future__ import annotations

import logging
import sys
import threading

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, Processor, WrappedLogger

FOREIGN_TEXT_LIMIT = 2048  # characters of any string a foreign line keeps
FOREIGN_TRACEBACK_LIMIT = 8192  # a traceback keeps its end: the frames nearest the error and the error
_handler: logging.Handler | None = None  # ours on the root logger, replaced when configure() runs again


def configure(log_format: str = "auto", level: str = "info", process: int | None = None) -> None:
    """`process`: the index of one of `serve --processes N`'s gateways, on each of its lines (they share a stream)."""
    console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    tag = [_tagged(process)] if process is not None else []
    # JSON lines are rendered by orjson straight to bytes: one request.done line per request is hot.
    renderer = _console() if console else structlog.processors.JSONRenderer(orjson.dumps)
    factory = structlog.PrintLoggerFactory(file=sys.stderr) if console else structlog.BytesLoggerFactory(
        file=sys.stderr.buffer)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *tag,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(console, numeric, tag)


def _tagged(process: int) -> Processor:
    def tag(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        event.setdefault("process", process)
        return event

    return tag


def _route_standard_logging(console: bool, level: int, tag: list[Processor]) -> None:
    """The root logger writes through a ProcessorFormatter: every library's records become lines
    like ours. Warnings and uncaught exceptions are logged too, so nothing else reaches stderr."""
    global _handler
    final = _console() if console else structlog.processors.JSONRenderer(_dumps)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            *tag,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            without_request_heads,
            structlog.processors.format_exc_info,
            clip_strings,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    # other libraries' info lines are chatter (gguf announces every file it writes): their warnings and up
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    _handler = handler
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = lambda args: _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)


def without_request_heads(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """aiohttp's HTTP parse errors carry the raw head lines they failed on: keep the class only."""
    exc_info = event.get("exc_info")
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    seen = 0
    while isinstance(exc, BaseException) and seen < 8:  # also when it is the cause of another error
        if isinstance(exc, HttpProcessingError):
            event.pop("exc_info")
            event["error"] = type(exc).__name__
            event["status"] = exc.code
            break
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return event


def clip_strings(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key, value in event.items():
        if isinstance(value, str):
            if key == "exception" and len(value) > FOREIGN_TRACEBACK_LIMIT:
                event[key] = "... " + value[-FOREIGN_TRACEBACK_LIMIT:]
            elif key != "exception" and len(value) > FOREIGN_TEXT_LIMIT:
                event[key] = f"{value[:FOREIGN_TEXT_LIMIT]}... ({len(value) - FOREIGN_TEXT_LIMIT} more characters)"
    return event


def _console() -> structlog.dev.ConsoleRenderer:
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())  # no escape codes in a file or a pipe


def _dumps(data: dict, **kwargs) -> str:
    return orjson.dumps(data, default=repr).decode()


def _log_uncaught(exc_type, exc, traceback) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, traceback)
        return
    logging.getLogger("gateway").critical("uncaught exception", exc_info=(exc_type, exc, traceback))
