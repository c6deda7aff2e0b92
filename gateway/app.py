"""build_app(): wires settings, config, state, router, proxy, loops and routes together.

The only module that knows everyone. Time, the GPU reader and the HTTP session are
arguments, so tests pass real fakes instead of patching. No request logic lives here.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from backends.upstream import refuse_redirects
from gateway import cors, state
from gateway.access import ACCESS, Access, access_middleware
from gateway.admission import Admission
from gateway.cluster import Cluster, ClusterView, LocalState
from gateway.config import RoutingConfig
from gateway.context import GATEWAY, Gateway
from gateway.control import Loops
from gateway.errors import error_middleware
from gateway.gpu import GpuReader, GpuWatch, NvmlReader
from gateway.handlers import admin, anthropic, manage, ollama, openai, ops, responses, status_page
from gateway.handlers.common import request_id_middleware
from gateway.hosts import host_check
from gateway.inflight import InFlight
from gateway.metrics import Metrics
from gateway.probes import Prober
from gateway.proxy import Proxy
from gateway.reload import Reloader
from gateway.routes import ROUTES
from gateway.settings import Settings
from gateway.shared_load import SharedLoad, local_state, shared_facts
from gateway.warmer import Warmer


def build_app(settings: Settings, config: RoutingConfig, *, clock: Callable[[], float] = time.monotonic,
              gpu_reader: GpuReader | None = None, session: aiohttp.ClientSession | None = None,
              run_loops: bool = True) -> web.Application:
    """A ready-to-run gateway. With run_loops=False nothing runs on a timer: tests drive `prober.step()`."""
    app = web.Application(middlewares=[request_id_middleware, error_middleware, *host_check(settings),
                                       cors.cors_middleware(cors.Origins(settings.extra_origins)), access_middleware],
                          client_max_size=1024**4)
    app.on_response_prepare.append(cors.on_prepare)  # before the head goes out: streams carry it too
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
        admission = Admission(metrics.queued)
        cluster = _cluster(settings, holder, inflight, admission, clock)
        load = SharedLoad(inflight, cluster, clock) if cluster.enabled else inflight  # what routing reads
        prober = Prober(holder, session, clock)
        gpus = GpuWatch(holder, gpu_reader or NvmlReader())
        warmer = Warmer(holder, load, session, prober, metrics, clock)
        metrics.watch(lambda: holder.current, load.view, admission.depths, inflight.slow_reason)
        metrics.watch_process()
        metrics.watch_cluster(cluster)
        # `load`, not `inflight`: with replicas, a claim's peers (what slots are learned from) are fleet-wide
        proxy = Proxy(session, holder, load, metrics, clock, on_release=admission.release, cluster=cluster)

        async def after_swap(added: set[str]) -> None:
            await prober.refresh(added)  # added workers: probed and warmed now, not a loop interval later
            await warmer.step()

        reloader = Reloader(holder, settings.config, inflight, metrics, clock, after_swap)
        app[GATEWAY] = Gateway(settings, holder, inflight, metrics, session, proxy, prober, admission, warmer, gpus,
                               clock, reloader, cluster, load)
        await cluster.start()  # unreachable Redis is not fatal: the replica starts alone and says so
        loops = Loops()
        loops.watch(holder, admission.wake_all)  # a worker that comes up may serve someone waiting
        if run_loops:
            await gpus.step()
            await prober.step()  # start serving with a picture of the fleet, not an empty one
            # What the process holds now (modules, config, the first picture of the fleet) mostly lives as
            # long as it does: out of the collector's walk, a full collection at 1,000 workers takes a
            # fifth of the time (a pause of the event loop, and CPU every probe round pays for).
            gc.collect()
            gc.freeze()
            loops.start(lambda: holder.current.config.health.interval_s,
                        lambda: prober.step(holder.current.config.health.jitter_s), "probes")
            loops.start(lambda: holder.current.config.health.interval_s, gpus.step, "gpu")
            loops.start(lambda: holder.current.config.warmer.interval_s, warmer.step, "warmer")
            loops.start(lambda: holder.current.config.server.config_poll_s or 5.0, reloader.watch_step, "config")
            if cluster.enabled:
                loops.start(lambda: settings.redis_sync_s, cluster.step, "cluster")
        try:
            yield
        finally:
            await loops.stop()
            await cluster.close()
            if injected is None:
                await session.close()

    return context


def _cluster(settings: Settings, holder: state.SnapshotHolder, inflight: InFlight, admission: Admission,
             clock: Callable[[], float]) -> Cluster:
    """Shared state through Redis when BEACON_REDIS_URL is set; else a lone process's, which shares nothing."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else None

    def local() -> LocalState:  # what this replica's traffic did within about two probe rounds
        return local_state(inflight, admission.depths(), 2 * holder.current.config.health.interval_s, holder, clock)

    def synced(view: ClusterView) -> None:
        shared_facts(holder, view, clock)
        # Another replica's request that ended frees a slot our queue heads may wait for, and no
        # event of ours says so: they look again on every sync (a plan each, only while some wait).
        admission.wake_all()

    return Cluster(url, local, prefix=settings.redis_prefix, lease_s=settings.redis_lease_s, on_sync=synced)


def new_session() -> aiohttp.ClientSession:
    # No pool limit: the gateway's own admission decides concurrency, not the connector.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300)
    # refuse_redirects: a worker's 3xx is a failed attempt, never a hop to wherever Location points.
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, middlewares=(refuse_redirects,),
                                 skip_auto_headers=("User-Agent", "Accept-Encoding"))


def _add_routes(app: web.Application) -> None:
    """Every route of gateway/routes.py, each to its handler; every /admin/ one behind the admin token."""
    modules = {"ollama": ollama, "manage": manage, "ops": ops, "admin": admin, "status_page": status_page,
               "openai": openai, "responses": responses, "anthropic": anthropic}
    for route in ROUTES:
        module, _, name = route.handler.partition(".")
        handler = getattr(modules[module], name)
        if route.guarded:
            handler = admin.guarded(handler)
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # and HEAD, as Ollama answers it
        else:
            app.router.add_route(route.method, route.path, handler)
