"""Many simulated Ollama workers in one process, each on its own loopback port: the fleet a
fleet-scale benchmark puts behind the gateway (`beacon-gateway sim-worker --workers 1000`).

Each worker is a whole `build_sim_app(SimWorker)`; one event loop serves them all. A control
address answers `GET /fleet` with every worker's URL and the request counters summed over the
fleet (how many probe rounds ran). No routing, no gateway imports.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
from collections import Counter

from aiohttp import web

from local_workers.sim.app import build_sim_app
from local_workers.sim.engine import SimWorker
from local_workers.sim.models import GIB, SimModel, parse_models


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="serve this many workers, from --port on (0: any ports)")
    parser.add_argument("--models-per-worker", type=int, default=0,
                        help="with --workers: each worker holds this many of --models, a different slice each (0: all)")
    parser.add_argument("--resident-every", type=int, default=0,
                        help="with --workers: every Nth worker starts with its first model loaded (0: none)")
    parser.add_argument("--control-port", type=int, default=0, help="with --workers: where GET /fleet answers")


def disk_of(catalogue: list[SimModel], index: int, per_worker: int) -> list[SimModel]:
    """Worker `index`'s models: a window of the catalogue that starts one further on per worker,
    so every model is on about the same number of workers."""
    if per_worker <= 0 or per_worker >= len(catalogue):
        return list(catalogue)
    return [catalogue[(index + j) % len(catalogue)] for j in range(per_worker)]


def build_fleet(ns: argparse.Namespace) -> list[SimWorker]:
    catalogue = parse_models(ns.models)
    return [SimWorker(name=f"{ns.name}{i}", models=disk_of(catalogue, i, ns.models_per_worker),
                      vram_bytes=int(ns.vram_gib * GIB), tier=ns.tier, tokens_per_s=ns.tokens_per_s,
                      load_s_per_gib=ns.load_s_per_gib, num_parallel=ns.num_parallel, max_queue=ns.max_queue,
                      max_loaded_models=ns.max_loaded_models)
            for i in range(ns.workers)]


async def serve_fleet(ns: argparse.Namespace) -> None:
    """Serve every worker and the control address until SIGINT or SIGTERM."""
    workers = build_fleet(ns)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        urls = []
        for i, worker in enumerate(workers):
            runner = web.AppRunner(build_sim_app(worker), handler_cancellation=True, access_log=None,
                                   shutdown_timeout=1)
            runners.append(runner)
            await runner.setup()
            await _listen(runner, ns.host, ns.port + i if ns.port else 0)
            urls.append(f"http://{ns.host}:{runner.addresses[0][1]}")
        if ns.resident_every > 0:
            await asyncio.gather(*(_preload(w) for w in workers[:: ns.resident_every] if w.disk))
        control = web.AppRunner(_control_app(workers, urls), access_log=None)
        runners.append(control)
        await control.setup()
        await _listen(control, ns.host, ns.control_port)
        print(f"sim-fleet of {len(workers)} {ns.tier} workers listening on {urls[0]} .. {urls[-1]}; "
              f"control http://{ns.host}:{control.addresses[0][1]}/fleet", flush=True)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _listen(runner: web.AppRunner, host: str, port: int) -> None:
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as exc:  # one line, not a traceback: the port is taken, or no such address
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        print(f"sim-fleet: cannot listen on {host}:{port}: {why}", file=sys.stderr)
        raise SystemExit(1) from None


async def _preload(worker: SimWorker) -> None:
    """The worker's first model loaded and kept (as a keep_alive of -1 would)."""
    model = next(iter(worker.disk.values()))
    res = await worker.acquire(model, math.inf)
    worker.release(res)


def _control_app(workers: list[SimWorker], urls: list[str]) -> web.Application:
    async def fleet(request: web.Request) -> web.Response:
        requests: Counter = Counter()
        for worker in workers:
            requests.update(worker.stats.requests)
        return web.json_response({"workers": [{"name": w.name, "url": u} for w, u in zip(workers, urls, strict=True)],
                                  "requests": dict(requests)})

    app = web.Application()
    app.router.add_get("/fleet", fleet)
    return app
