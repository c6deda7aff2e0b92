"""Hostile fake workers for the tests that check what the gateway takes from a worker: real aiohttp
apps on 127.0.0.1 that look healthy to probes of their kind, and answer any path as the test sets
(a redirect, an endless body, a body of a given size). `Internal` stands for a service that only
the gateway can reach (cloud metadata, an admin port): it counts every request it gets.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

MODEL = "llama3.2:1b"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_LISTED = {"name": MODEL, "model": MODEL, "size": 1_300_000_000}
_RESIDENT = {**_LISTED, "size_vram": 1_300_000_000, "expires_at": "2999-01-01T00:00:00Z"}
HEALTHY: dict[str, dict[str, object]] = {  # what each kind's probe reads, so the fake is up and holds MODEL
    "ollama": {"/api/tags": {"models": [_LISTED]}, "/api/ps": {"models": [_RESIDENT]},
               "/api/version": {"version": "0.12.6"}},
    "llamacpp": {"/health": {"status": "ok"}, "/v1/models": {"data": [{"id": MODEL}]}, "/props": {"total_slots": 1},
                 "/slots": []},
    "openai": {"/v1/models": {"data": [{"id": MODEL}]}},
}


class FakeWorker:
    """A worker of `kind` that probes healthy with MODEL resident; `routes` overrides any path."""

    def __init__(self, kind: str = "ollama") -> None:
        self.kind = kind
        self.routes: dict[str, Handler] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.sent = 0  # bytes written by endless() answers so far

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if request.can_read_body:
            await request.read()
        if (handler := self.routes.get(request.path)) is not None:
            return await handler(request)
        if request.path in HEALTHY[self.kind]:
            return web.json_response(HEALTHY[self.kind][request.path])
        return web.json_response({"error": "not found"}, status=404)

    def endless(self, prefix: bytes = b'{"models":[', piece: bytes = b'{"name":"x"},' * 5000,
                content_type: str = "application/json", status: int = 200) -> Handler:
        """An answer that never ends (chunked, no newline ever): it stops only when the reader hangs up."""
        async def handler(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(status=status, headers={"Content-Type": content_type})
            await resp.prepare(request)
            try:
                await resp.write(prefix)
                while True:
                    await resp.write(piece)
                    self.sent += len(piece)
            except ConnectionError:
                pass
            return resp

        return handler


def redirect(to: str, status: int = 307) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": to}, body=b'{"error":"moved"}')

    return handler


def body(data: bytes, content_type: str = "application/json", declare_length: bool = True) -> Handler:
    """A fixed answer, with its Content-Length declared or sent chunked."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if declare_length:
            return web.Response(body=data, headers={"Content-Type": content_type})
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for start in range(0, len(data), 256 * 1024):
            await resp.write(data[start:start + 256 * 1024])
        await resp.write_eof()
        return resp

    return handler


class Internal:
    """A service only the gateway can reach: answers 200 to anything, and counts it."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    def app(self) -> web.Application:
        async def anything(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path}")
            answer = {"models": [], "data": [], "version": "0.0.1", "status": "success", "secret": "instance-role"}
            return web.Response(body=orjson.dumps(answer), content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        return app
