"""What a worker said when it failed, and how the gateway says it on: the worker's message from a
bounded read of its error body (Ollama's `{"error": "..."}`, the `{"error": {"message": ...}}` of
OpenAI and llama.cpp, else the start of its HTML or plain text), a failure described without the
worker's address, and OpenAI's error envelope with the one status-to-type table every /v1 error uses.

Words only: it decides nothing about failover or status codes, and imports nothing of the gateway.
Messages reach clients, who are told worker names, never addresses.
"""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
import orjson

from backends.answers import loads_lenient
from backends.upstream import AnswerTooLarge, UpstreamRedirect

ERROR_DETAIL_BYTES = 4096  # a worker's error message: enough for any real one, bounded for a hostile one
_READ_S = 2.0  # an error body that has not come by then is not waited for: the status already says it failed
_TEXT_BYTES = 2048  # what of a body that is not an error document is shown: its first 500 characters, from these
# OpenAI's error types by status. Any other 4xx is invalid_request_error (404 too: OpenAI's own 404
# for an unknown model says so), any other status api_error. 503 keeps the type the gateway and its
# load balancer (deploy/haproxy) have always answered.
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                 503: "service_unavailable"}


def message_in(data: object) -> str | None:
    """The worker's own words in a parsed error answer, in Ollama's shape or in OpenAI's and
    llama.cpp's; None when it has neither."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None


def message_of(body: bytes) -> str | None:
    """message_in for an error body as it came; None for a body that is not JSON."""
    return message_in(_parsed(body))


def _parsed(body: bytes) -> object:
    try:
        return loads_lenient(body) if body.strip() else None
    except ValueError:  # not JSON, or too costly to parse: a body that says nothing readable
        return None


def _words(data: object, body: bytes, status: int) -> str:
    """The message, else the start of the body's text (an HTML page, a plain line), else the status."""
    message = message_in(data)
    if message is None:
        message = body[:_TEXT_BYTES].decode("utf-8", "replace").strip()[:500]
    return message or f"worker answered {status}"


async def error_detail(resp: aiohttp.ClientResponse) -> str:
    """A failed answer's status and the worker's own message, read from its first bytes only."""
    message = message_of(await _first_bytes(resp, ERROR_DETAIL_BYTES))
    return f"{resp.status} {message[:300]}" if message else f"answered {resp.status}"


async def error_start(resp: aiohttp.ClientResponse, limit: int = 200) -> str:
    """The start of an error answer as text, for a log line or a message: never more than `limit` bytes."""
    return (await _first_bytes(resp, limit)).decode("utf-8", "replace")


async def _first_bytes(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` bytes of the body, over as many chunks as it takes, within _READ_S."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(_READ_S):
            while size < limit and (chunk := await resp.content.read(limit - size)):
                parts.append(chunk)
                size += len(chunk)
    except Exception:  # best effort: the status already says it failed
        pass
    return b"".join(parts)


def as_ollama_error(body: bytes, status: int) -> bytes:
    """A worker's error answer in Ollama's shape `{"error": "..."}`, whatever shape it came in."""
    return orjson.dumps({"error": _words(_parsed(body), body, status)[:1000]})


def as_openai_error(body: bytes, status: int) -> bytes:
    """A worker's error answer in OpenAI's shape: kept when it already is, wrapped when it is
    Ollama-shaped, HTML or plain text."""
    data = _parsed(body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and {"type", "code"} <= error.keys():
        return body
    return openai_error(_words(data, body, status), status)


def openai_type(status: int) -> str:
    return _OPENAI_TYPES.get(status) or ("invalid_request_error" if 400 <= status < 500 else "api_error")


def openai_error(message: str, status: int) -> bytes:
    """OpenAI's error envelope, for the gateway's own /v1 errors and for workers' errors alike."""
    return orjson.dumps({"error": {"message": message, "type": openai_type(status), "code": status}})


def describe(exc: BaseException) -> str:
    """A failure in words that name no address: aiohttp's own texts carry the worker's host and
    port (or its URL), and those go to clients, who are told worker names only."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timed out"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "cannot connect: TLS certificate not accepted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "cannot connect: TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {_os_reason(exc.os_error)}"
    if isinstance(exc, (UpstreamRedirect, AnswerTooLarge)):
        return str(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"answered {exc.status}"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"{type(exc).__name__}: {_os_reason(exc)}"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):  # about the wire, not the peer
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(exc, aiohttp.ClientError):  # TLS, invalid URL, ...: their texts may carry the address
        return type(exc).__name__
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_probe(exc: BaseException) -> str:
    """A failed probe: any timeout is "probe timed out", the words /health and the README show."""
    if isinstance(exc, TimeoutError):
        return "probe timed out"
    return describe(exc)


def _os_reason(error: OSError) -> str:
    """An OSError by its errno: its strerror is "Connect call failed ('10.0.0.5', 11434)". A failed
    name lookup (gaierror) says only what went wrong."""
    if isinstance(error, socket.gaierror):
        return error.strerror or "name lookup failed"
    if error.errno:
        return os.strerror(error.errno)
    return type(error).__name__
