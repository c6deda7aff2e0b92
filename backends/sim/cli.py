"""`beacon-gateway sim-worker` / `python -m backends.sim`: one simulated worker on a port.

Parses flags, builds the worker, serves until SIGINT or SIGTERM. Nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from backends.sim.catalog import GIB, parse_models
from backends.sim.engine import SimWorker
from backends.sim.server import build_sim_app

DEFAULT_MODELS = "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB,nomic-embed-text=0.27GiB"


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="sim")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="NAME=SIZE,... (e.g. a:1b=1.3GiB)")
    parser.add_argument("--vram-gib", type=float, default=24.0)
    parser.add_argument("--tier", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--tokens-per-s", type=float, default=400.0)
    parser.add_argument("--load-s-per-gib", type=float, default=0.4)
    parser.add_argument("--num-parallel", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=512)


def worker_from_args(ns: argparse.Namespace) -> SimWorker:
    return SimWorker(name=ns.name, models=parse_models(ns.models), vram_bytes=int(ns.vram_gib * GIB), tier=ns.tier,
                     tokens_per_s=ns.tokens_per_s, load_s_per_gib=ns.load_s_per_gib, num_parallel=ns.num_parallel,
                     max_queue=ns.max_queue)


def run_from_args(ns: argparse.Namespace) -> None:
    asyncio.run(_serve(ns))


async def _serve(ns: argparse.Namespace) -> None:
    worker = worker_from_args(ns)
    runner = web.AppRunner(build_sim_app(worker), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, ns.host, ns.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port actually bound when 0
    print(f"sim-worker {ns.name} ({ns.tier}) listening on http://{ns.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
