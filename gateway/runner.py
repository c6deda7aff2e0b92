"""Running aiohttp apps until a signal: the event loop (uvloop where present) and sites.

Shared by `serve`, `demo` and `sim-worker`. Knows nothing about routing. Guards the listener
(connection cap, request-head and idle deadlines, header size) where aiohttp has no setting.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` on uvloop when it is installed, else the default loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    max_header_bytes: int = 16384


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
         b"Connection: close\r\nContent-Length: 48\r\n\r\n{\"error\": \"too many connections to the gateway\"}")


class GuardedServer(web.Server):
    """aiohttp's server with what it lacks for a public listener: a cap on open connections (past
    it, a 503 and close) and a deadline for each request head, so a client that trickles its
    headers (slow loris) or idles holds a connection for header_timeout_s / idle_timeout_s."""

    def __init__(self, base: web.Server, limits: ConnectionLimits) -> None:
        super().__init__(self._timed(base.request_handler), request_factory=self._started(base.request_factory),
                         handler_cancellation=base.handler_cancellation, loop=base._loop, **base._kwargs)  # noqa: SLF001
        self._limits = limits
        self._deadlines: dict = {}

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self._limits.max_connections:
            transport.write(_BUSY)
            transport.close()
            return
        self._arm(handler, self._limits.header_timeout_s)

    def connection_lost(self, handler, exc=None) -> None:
        self._disarm(handler)
        super().connection_lost(handler, exc)

    def _arm(self, handler, seconds: float) -> None:
        self._disarm(handler)
        transport = self._connections.get(handler)
        if transport is not None:
            self._deadlines[handler] = self._loop.call_later(seconds, transport.close)

    def _disarm(self, handler) -> None:
        deadline = self._deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()

    def _started(self, factory):
        def make(message, payload, protocol, writer, task):
            self._disarm(protocol)  # the head arrived: the request's own timeouts take over
            return factory(message, payload, protocol, writer, task)

        return make

    def _timed(self, handler):
        async def handle(request):
            try:
                return await handler(request)
            finally:
                self._arm(request.protocol, self._limits.idle_timeout_s + self._limits.header_timeout_s)

        return handle


class GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs) -> None:
        super().__init__(app, max_line_size=limits.max_header_bytes, max_field_size=limits.max_header_bytes,
                         keepalive_timeout=limits.idle_timeout_s, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return GuardedServer(await super()._make_server(), self._limits)


async def start(app: web.Application, host: str, port: int,
                limits: ConnectionLimits | None = None) -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner and the port actually bound (port 0 picks one)."""
    runner = GuardedRunner(app, limits or ConnectionLimits(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if port == 0 else port  # noqa: SLF001
    return runner, bound


async def until_signalled(on_hangup: Callable[[], Awaitable[object]] | None = None) -> None:
    """Wait for SIGINT or SIGTERM; run `on_hangup` on each SIGHUP meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = [signal.SIGINT, signal.SIGTERM]
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    pending: set[asyncio.Task] = set()
    if on_hangup is not None:
        def hangup() -> None:
            task = asyncio.ensure_future(on_hangup())
            pending.add(task)
            task.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGHUP, hangup)
        handled.append(signal.SIGHUP)
    try:
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
