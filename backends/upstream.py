"""How every call to a worker stays a call to that worker: no redirect is followed and every read is
capped. How its failures are put in words (never with its address) is worker_said.py's.

Workers are trusted for tokens, not for control. A worker that answers 3xx could otherwise send
the client's body anywhere the gateway can reach (cloud metadata, internal services); one that
answers without end could fill the gateway's memory. Wire-level only: no policy, no gateway imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import orjson

PROBE_MAX_BYTES = 4 * 1024 * 1024  # [health] max_probe_kib's default, for callers without a config
# JSON a worker sends is parsed on the event loop every client shares: an answer of a few MiB of
# `[],` takes orjson a second and a GiB. Real answers hold a few containers per token or model.
MAX_WORKER_CONTAINERS = 200_000
_COUNT_ABOVE = 64 * 1024  # smaller answers cannot hold enough containers to matter: not counted


class AnswerTooCostly(ValueError):
    """A worker's JSON holds more arrays and objects than any real answer: a malformed answer."""


def worker_json(body: bytes | str):
    """orjson.loads for what a worker sent, refusing bodies too costly to parse before parsing."""
    if len(body) > _COUNT_ABOVE:
        raw = body.encode() if isinstance(body, str) else body
        containers = raw.count(b"[") + raw.count(b"{")
        if containers > MAX_WORKER_CONTAINERS:
            raise AnswerTooCostly(f"answer holds {containers} JSON arrays and objects, over the "
                                  f"{MAX_WORKER_CONTAINERS} any real answer needs")
    return orjson.loads(body)


class UpstreamRedirect(aiohttp.ClientResponseError):
    """A worker answered 3xx. Never followed: it is a failed attempt, like a 5xx."""

    def __str__(self) -> str:  # the base class would add the URL: client messages name workers, not addresses
        return f"answered {self.status}: a redirect, which the gateway never follows"


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """A worker's answer ran past the cap the caller set for it."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"answer larger than {_size(limit)} ({setting})")
        self.limit = limit


async def refuse_redirects(request: aiohttp.ClientRequest,
                           handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]
                           ) -> aiohttp.ClientResponse:
    """Client middleware: aiohttp runs it on every hop, so raising on the first 3xx stops the
    session before it sends anything to the Location."""
    resp = await handler(request)
    if 300 <= resp.status < 400:
        status, info, history = resp.status, resp.request_info, resp.history
        resp.close()  # never read the redirect's body, never reuse its connection
        raise UpstreamRedirect(info, history, status=status, message="redirect refused")
    return resp


async def read_capped(resp: aiohttp.ClientResponse, limit: int, setting: str) -> bytes:
    """The whole body, or AnswerTooLarge as soon as it is known to pass `limit` bytes."""
    body, complete = await read_up_to(resp, limit)
    if not complete:
        raise AnswerTooLarge(limit, setting)
    return body


async def read_up_to(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes (a little more: what already arrived) and whether that was the whole body.
    A declared Content-Length over the limit is refused before reading anything."""
    if resp.content_length is not None and resp.content_length > limit:
        return b"", False
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts), False
    return b"".join(parts), True


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"
