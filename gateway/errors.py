"""The GatewayError family and the one middleware that turns errors into front-API bodies.

`/v1/messages` gets Anthropic's shape `{"type": "error", "error": {"type", "message"}}`, the rest of
`/v1/*` OpenAI's `{"error": {"message", "type", "code"}}`; everything else Ollama's `{"error": "..."}`.
Handlers raise; they never build error responses themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from backends.anthropic_answers import anthropic_error
from backends.worker_said import openai_error

log = structlog.get_logger("gateway.errors")


def clip(text: str, limit: int = 120) -> str:
    """A client's string as it may appear in an error or a log line: never whole when long."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class GatewayError(Exception):
    """An error the gateway answers itself; its status alone says its type on /v1 (worker_said's table)."""

    status = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(GatewayError):
    status = 400


class Unauthorized(GatewayError):
    status = 401


class NotFound(GatewayError):
    status = 404


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(f'model "{clip(model)}" not found, try pulling it first')
        self.model = model


class Forbidden(GatewayError):
    status = 403


class RequestTimeout(GatewayError):
    status = 408


class TooManyRequests(GatewayError):
    """A client's own limit (concurrency or requests per minute); Retry-After says when to come back."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class PayloadTooLarge(GatewayError):
    status = 413


class NoCapacity(GatewayError):
    """Nothing can serve now; the client should come back after Retry-After seconds."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class UpstreamFailed(GatewayError):
    status = 502


class UpstreamTimeout(GatewayError):
    status = 504


def error_body(path: str, status: int, message: str) -> bytes:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic_error(message, status)  # its status-to-type table is backends.anthropic_answers'
    if path == "/v1" or path.startswith("/v1/"):
        return openai_error(message, status)
    return orjson.dumps({"error": message})


def error_response(path: str, status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=error_body(path, status, message),
                        content_type="application/json", headers=headers)


UNREADABLE_BODY = "request body could not be read: its Content-Encoding or framing does not match its bytes"

_HTTP_MESSAGES = {
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(request.path, exc.status, exc.message, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request.path, exc.status, _http_message(request, exc), headers=_kept_headers(exc))
    except RequestPayloadError:  # a body streamed by the handler itself (blob uploads) that does not decode
        return error_response(request.path, 400, UNREADABLE_BODY)
    except Exception:  # a bug of ours: answer 500, keep serving, and leave a trace
        log.exception("request.unhandled_error", path=request.path, method=request.method)
        return error_response(request.path, 500, "internal gateway error")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"{request.method} {request.path}: {_HTTP_MESSAGES[404]}"
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}"
    return _HTTP_MESSAGES.get(exc.status, exc.reason or "error")


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
