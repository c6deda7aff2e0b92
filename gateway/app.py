"""build_app(): wires settings, config, state, router, proxy, loops and routes together.

The only module that knows everyone. Time, the GPU reader and the HTTP session are
arguments, so tests pass real fakes instead of patching. No request logic lives here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gateway import state
from gateway.access import ACCESS, Access, access_middleware
from gateway.admission import Admission
from gateway.config import RoutingConfig
from gateway.context import GATEWAY, Gateway
from gateway.control import Loops
from gateway.errors import error_middleware
from gateway.gpu import GpuReader, NvmlReader
from gateway.handlers import admin, manage, ollama, openai, ops, status_page
from gateway.handlers.common import request_id_middleware
from gateway.inflight import InFlight
from gateway.metrics import Metrics
from gateway.probes import GpuWatch, Prober
from gateway.proxy import Proxy
from gateway.reload import Reloader
from gateway.settings import Settings
from gateway.warmer import Warmer


def build_app(settings: Settings, config: RoutingConfig, *, clock: Callable[[], float] = time.monotonic,
              gpu_reader: GpuReader | None = None, session: aiohttp.ClientSession | None = None,
              run_loops: bool = True) -> web.Application:
    """A ready-to-run gateway. With run_loops=False nothing runs on a timer: tests drive `prober.step()`."""
    app = web.Application(middlewares=[request_id_middleware, error_middleware, access_middleware],
                          client_max_size=1024**4)
    app[ACCESS] = Access(clock)
    _add_routes(app)
    app.cleanup_ctx.append(_lifecycle(settings, config, clock, gpu_reader, session, run_loops))
    return app


def _lifecycle(settings: Settings, config: RoutingConfig, clock: Callable[[], float], gpu_reader: GpuReader | None,
               injected: aiohttp.ClientSession | None, run_loops: bool):
    async def context(app: web.Application) -> AsyncIterator[None]:
        session = injected or new_session()
        holder = state.SnapshotHolder(state.initial(config, wall_now=time.time(), now=clock()))
        inflight, metrics = InFlight(clock=clock), Metrics()
        prober = Prober(holder, session, clock)
        gpus = GpuWatch(holder, gpu_reader or NvmlReader())
        warmer = Warmer(holder, inflight, session, prober, metrics, clock)
        admission = Admission()
        metrics.watch(lambda: holder.current, inflight.view, admission.depths, inflight.slow_reason)
        metrics.watch_process()
        proxy = Proxy(session, holder, inflight, metrics, clock, on_release=admission.release)

        async def after_swap(added: set[str]) -> None:
            await prober.refresh(added)  # added workers: probed and warmed now, not a loop interval later
            await warmer.step()

        reloader = Reloader(holder, settings.config, inflight, metrics, clock, after_swap)
        app[GATEWAY] = Gateway(settings, holder, inflight, metrics, session, proxy, prober, admission, warmer, gpus,
                               clock, reloader)
        loops = Loops()
        loops.watch(holder, admission.wake_all)  # a worker that comes up may serve someone waiting
        if run_loops:
            await gpus.step()
            await prober.step()  # start serving with a picture of the fleet, not an empty one
            loops.start(lambda: holder.current.config.health.interval_s, prober.step, "probes")
            loops.start(lambda: holder.current.config.health.interval_s, gpus.step, "gpu")
            loops.start(lambda: holder.current.config.warmer.interval_s, warmer.step, "warmer")
            loops.start(lambda: holder.current.config.server.config_poll_s or 5.0, reloader.watch_step, "config")
        try:
            yield
        finally:
            await loops.stop()
            if injected is None:
                await session.close()

    return context


def new_session() -> aiohttp.ClientSession:
    # No pool limit: the gateway's own admission decides concurrency, not the connector.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                 skip_auto_headers=("User-Agent", "Accept-Encoding"))


def _add_routes(app: web.Application) -> None:
    app.router.add_get("/", ollama.root)
    app.router.add_get("/api/version", ollama.version)
    app.router.add_get("/api/tags", ollama.tags)
    app.router.add_get("/api/ps", ollama.ps)
    for path in ("show", "chat", "generate", "embed", "embeddings"):
        app.router.add_post(f"/api/{path}", ollama.infer)
    app.router.add_post("/api/pull", manage.pull)
    app.router.add_post("/api/push", manage.push)
    app.router.add_post("/api/create", manage.create)
    app.router.add_post("/api/copy", manage.copy)
    app.router.add_delete("/api/delete", manage.delete)
    app.router.add_head("/api/blobs/{digest}", manage.blob_head)
    app.router.add_post("/api/blobs/{digest}", manage.blob_upload)
    app.router.add_get("/health", ops.health)
    app.router.add_get("/health/live", ops.live)
    app.router.add_get("/metrics", ops.metrics)
    admin.add_routes(app)
    app.router.add_get("/status", status_page.status_page)
    openai.add_routes(app)
