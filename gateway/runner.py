"""Running aiohttp apps until a signal: the event loop (uvloop where present) and sites.

Shared by `serve` and `demo`. Knows nothing about routing. Guards the listener (connection cap,
request-head and idle deadlines, header size) where aiohttp has no setting, and answers a
malformed request head without repeating or logging its bytes.

SIGINT, SIGTERM and SIGHUP belong to run() from the loop's first moment. A stop signal (SIGINT,
SIGTERM, and SIGHUP for the demo, whose terminal may close) cancels the main coroutine while it
starts up, so its finally blocks stop whatever it had started, and ends until_signalled() once
it waits there. A second one while stopping is ignored: cleanup is never cut short. SIGHUP, when
it does not stop, runs until_signalled()'s on_hangup (serve reloads) and is ignored outside it.
An address that cannot be bound raises listen.CannotListen, which says what to do.
"""

from __future__ import annotations

import asyncio
import contextvars
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, InvalidURLError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway import listen

log = structlog.get_logger("gateway.runner")


class _Stop:
    """The signals of one run(): the stop request, and what SIGHUP does meanwhile."""

    def __init__(self, task: asyncio.Task) -> None:
        self.task, self.requested, self.waiting = task, asyncio.Event(), False
        self.on_hangup: Callable[[], object] | None = None

    def signalled(self) -> None:
        if self.requested.is_set():
            return  # already stopping: let cleanup finish
        self.requested.set()
        if not self.waiting:
            self.task.cancel()  # still starting up: unwind through the caller's finally blocks

    def hangup(self) -> None:
        if self.on_hangup is not None:
            self.on_hangup()


_STOP: contextvars.ContextVar[_Stop | None] = contextvars.ContextVar("beacon_stop", default=None)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(main: Callable[[], Awaitable[None]], stop_on: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
    """Run `main` on uvloop when it is installed, else the default loop, until it returns or a
    signal of `stop_on` stops it (then run() returns normally too)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_signalled(main, stop_on))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_signalled(main, stop_on))


async def _signalled(main: Callable[[], Awaitable[None]], stop_on: tuple[signal.Signals, ...]) -> None:
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None, "asyncio.run and Runner.run run a coroutine as a task"
    stop = _Stop(task)
    token = _STOP.set(stop)
    handled = {*stop_on, signal.SIGHUP}
    for sig in handled:
        loop.add_signal_handler(sig, stop.signalled if sig in stop_on else stop.hangup)
    try:
        await main()
    except asyncio.CancelledError:
        if not stop.requested.is_set():
            raise
        task.uncancel()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        _STOP.reset(token)


def stop_requested() -> bool:
    """Whether a stop signal has reached this run() (a supervisor tells its own stop from a child's exit)."""
    stop = _STOP.get()
    return stop is not None and stop.requested.is_set()


async def until_signalled(on_hangup: Callable[[], Awaitable[object]] | None = None) -> None:
    """Wait for a stop signal (under run()); run `on_hangup` on each SIGHUP meanwhile."""
    stop = _STOP.get()
    if stop is None:
        raise RuntimeError("until_signalled() waits for the signals of runner.run()")
    pending: set[asyncio.Task] = set()
    if on_hangup is not None:
        def hangup() -> None:
            task = asyncio.ensure_future(on_hangup())
            pending.add(task)
            task.add_done_callback(pending.discard)

        stop.on_hangup = hangup
    stop.waiting = True
    try:
        await stop.requested.wait()
    finally:
        stop.waiting, stop.on_hangup = False, None


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 4096
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    max_header_bytes: int = 16384


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
         b"Connection: close\r\nContent-Length: 48\r\n\r\n{\"error\": \"too many connections to the gateway\"}")


class QuietRequestHandler(RequestHandler):
    """aiohttp's connection handler, except for a request head it cannot parse: aiohttp logs a
    traceback and answers with the raw lines it choked on, which may hold the client's
    Authorization header. Here the log line and the answer name the kind of error only."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        # a method that is not HTTP at all is mostly TLS or scanners on a first request: as aiohttp, only debug
        noise = isinstance(exc, BadHttpMethod) and self._request_count == 1  # noqa: SLF001
        (log.debug if noise else log.info)("http.bad_request", status=status, error=type(exc).__name__,
                                           remote=request.remote)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started: no error answer can follow")
        resp = web.Response(status=status, body=orjson.dumps({"error": _bad_request_reason(exc)}),
                            content_type="application/json")
        resp.force_close()
        return resp


def _bad_request_reason(exc: HttpProcessingError) -> str:
    if isinstance(exc, LineTooLong):
        return "malformed HTTP request: a request line or header is too long"
    if isinstance(exc, BadStatusLine):
        return "malformed HTTP request: bad request line"
    if isinstance(exc, InvalidURLError):
        return "malformed HTTP request: bad URL"
    return "malformed HTTP request"


class GuardedServer(web.Server):
    """aiohttp's server with what it lacks for a public listener: a cap on open connections (past
    it, a 503 and close) and a deadline for each request head, so a client that trickles its
    headers (slow loris) or idles holds a connection for header_timeout_s / idle_timeout_s."""

    def __init__(self, base: web.Server, limits: ConnectionLimits) -> None:
        super().__init__(self._timed(base.request_handler), request_factory=self._started(base.request_factory),
                         handler_cancellation=base.handler_cancellation, loop=base._loop, **base._kwargs)  # noqa: SLF001
        self._limits = limits
        self._deadlines: dict = {}

    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)

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


async def start(app: web.Application, host: str, port: int, limits: ConnectionLimits | None = None,
                reuse_port: bool = False) -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner and the port actually bound (port 0 picks one).
    An address that cannot be bound raises listen.CannotListen, with the app cleaned up.
    `reuse_port`: SO_REUSEPORT, so sibling processes (`serve --processes N`) share the port."""
    runner = GuardedRunner(app, limits or ConnectionLimits(), handler_cancellation=True, access_log=None,
                           shutdown_timeout=5)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True, reuse_port=reuse_port)
        await site.start()
    except BaseException as exc:  # a taken address, or a signal during start-up
        await runner.cleanup()  # the app's start-up hooks may have run: stop what they started
        if isinstance(exc, OSError):
            raise listen.cannot_listen(host, port, exc) from None
        raise
    bound = runner.addresses[0][1] if port == 0 else port
    return runner, bound
