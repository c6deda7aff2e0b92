"""What every front handler shares: the body reader, the model field, request ids, accounting.

Reading a body validates it once (size, shape, UTF-8, JSON object, keys as Ollama's Go decoder
reads them) and raises the right GatewayError; accounting writes the one `request.done` line and
the request metrics.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.config import ServerConfig
from gateway.context import GATEWAY
from gateway.errors import UNREADABLE_BODY, BadRequest, PayloadTooLarge, RequestTimeout
from gateway.handlers.go_fields import check_keys
from gateway.metrics import Metrics
from gateway.names import InvalidModelName
from gateway.outcome import Outcome
from gateway.routes import body_endpoint
from gateway.state import Snapshot

log = structlog.get_logger("gateway.request")

REQUEST_ID = web.RequestKey("request_id", str)
_MIB = 1024 * 1024


async def read_body(request: web.Request, limit_mib: float) -> bytes:
    """The whole body, within the endpoint's size limit (`[server] body_mib`, else `limit_mib`)
    and `[server] body_timeout_s` (a client trickling its body holds a connection, nothing more)."""
    server = request.app[GATEWAY].holder.current.config.server
    key = body_endpoint(request.path)
    limit = int((server.body_mib.get(key, limit_mib) if key else limit_mib) * _MIB)
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the {limit} byte limit "
                              f"for {request.path}")
    try:
        return await _read_within(request, limit, server.body_timeout_s)
    except RequestPayloadError:
        raise BadRequest(UNREADABLE_BODY) from None


async def _read_within(request: web.Request, limit: int, timeout_s: float) -> bytes:
    if request.content.is_eof():  # the whole body came with the head (most API calls): no timer needed
        body = request.content.read_nowait(-1)
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is over the {limit} byte limit for {request.path}")
        return body
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over the {limit} byte limit for {request.path}")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout_s:g}s") from None
    return b"".join(chunks)


async def read_object(request: web.Request, limit_mib: float) -> tuple[bytes, dict[str, Any]]:
    """The body and the JSON object it holds, judged by every rule of parse_object for this path."""
    body = await read_body(request, limit_mib)
    return body, parse_object(body, request.path, request.app[GATEWAY].holder.current.config.server)


def parse_object(body: bytes, path: str = "", server: ServerConfig | None = None) -> dict[str, Any]:
    """The JSON object a front endpoint expects, or a 4xx that says what is wrong.

    Parsing runs on the event loop every client shares, so a body is first sized up at C speed
    (`[server] max_json_containers`, `max_json_items`); orjson refuses nesting past 1024 levels.
    Then `check_keys` refuses keys that Ollama's Go decoder would read differently from us."""
    if not body.strip():
        raise BadRequest("missing request body")
    _within_json_limits(body, server or _DEFAULT_SERVER)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request body is not valid UTF-8") from None
        raise BadRequest(f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    check_keys(data, path)
    return data


_DEFAULT_SERVER = ServerConfig()


def _within_json_limits(body: bytes, server: ServerConfig) -> None:
    """413 before parsing a body whose arrays, objects or items could hold the loop: counting bytes
    costs ~7 ms per 10 MiB, parsing a container ~150 ns and an item ~15 ns (plus our own checks)."""
    if len(body) > server.max_json_containers:  # a shorter body cannot hold more: skip the count
        containers = body.count(b"[") + body.count(b"{")
        if containers > server.max_json_containers:
            raise PayloadTooLarge(f"request body holds {containers} '[' and '{{' (arrays, objects or brackets in "
                                  f"strings), over the {server.max_json_containers} limit ([server] "
                                  "max_json_containers)")
    if len(body) > server.max_json_items:
        items = body.count(b",")
        if items > server.max_json_items:
            raise PayloadTooLarge(f"request body holds {items} ',' (list items, object members or commas in "
                                  f"strings), over the {server.max_json_items} limit ([server] max_json_items)")


def model_field(data: dict[str, Any], key: str = "model") -> str:
    """The requested model; older Ollama clients send `name` instead of `model`."""
    value = data.get(key)
    if value is None and key == "model":
        value = data.get("name")
    if value is None or value == "":
        raise BadRequest(f"{key} is required")
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string, got {type(value).__name__}")
    return value


def resolve(snapshot: Snapshot, name: str) -> str:
    try:
        return snapshot.names.resolve(name)
    except InvalidModelName as exc:
        raise BadRequest(str(exc)) from None


@web.middleware
async def request_id_middleware(request: web.Request,
                                handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else os.urandom(16).hex()
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    return response


def account(metrics: Metrics, snapshot: Snapshot, outcome: Outcome) -> None:
    """One finished request into metrics and its one request.done line."""
    label = metrics.model_label(snapshot, outcome.model)
    metrics.child(metrics.requests, outcome.label, label, metrics.worker_label(outcome.worker), outcome.kind).inc()
    metrics.child(metrics.duration, label).observe(outcome.duration_s)
    if outcome.ttfb_s is not None:
        metrics.child(metrics.ttfb, label).observe(outcome.ttfb_s)
    if outcome.tokens:
        metrics.child(metrics.tokens, label).inc(outcome.tokens)
    log.info("request.done", endpoint=outcome.label, model=outcome.model, worker=outcome.worker or None,
             reason=outcome.reason or None, outcome=outcome.kind.value, status=outcome.status,
             ttft_ms=None if outcome.ttfb_s is None else round(outcome.ttfb_s * 1000, 2),
             duration_ms=round(outcome.duration_s * 1000, 2), tokens=outcome.tokens,
             failed_attempts=list(outcome.attempts) or None, client=outcome.client, priority=outcome.priority,
             queued_ms=None if outcome.queued_s is None else round(outcome.queued_s * 1000, 2))
