"""Running aiohttp apps until a signal: the event loop (uvloop where present) and sites.

Shared by `serve`, `demo` and `sim-worker`. Knows nothing about routing.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

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


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving `app`; returns the runner and the port actually bound (port 0 picks one)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
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
