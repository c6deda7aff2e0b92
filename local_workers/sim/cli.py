"""`beacon-gateway sim-worker` / `python -m local_workers.sim`: one simulated Ollama worker on a port
(or, with `--workers N`, N of them in one process: local_workers/sim/fleet.py).

Parses flags, builds the worker, serves until SIGINT or SIGTERM. No routing, no gateway imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from aiohttp import web

from local_workers.sim.app import build_sim_app
from local_workers.sim.engine import SimWorker
from local_workers.sim.fleet import add_fleet_arguments, serve_fleet
from local_workers.sim.models import GIB, parse_models

DEFAULT_MODELS = "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB,nomic-embed-text=0.27GiB"


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="sim")
    parser.add_argument("--models", default=DEFAULT_MODELS, help="NAME=SIZE,... on disk (e.g. a:1b=1.3GiB)")
    parser.add_argument("--vram-gib", type=float, default=24.0)
    parser.add_argument("--tier", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--tokens-per-s", type=float, default=400.0)
    parser.add_argument("--load-s-per-gib", type=float, default=0.4)
    parser.add_argument("--num-parallel", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=512)
    parser.add_argument("--max-loaded-models", type=int, default=3)
    add_fleet_arguments(parser)


def worker_from_args(ns: argparse.Namespace) -> SimWorker:
    return SimWorker(name=ns.name, models=parse_models(ns.models), vram_bytes=int(ns.vram_gib * GIB), tier=ns.tier,
                     tokens_per_s=ns.tokens_per_s, load_s_per_gib=ns.load_s_per_gib, num_parallel=ns.num_parallel,
                     max_queue=ns.max_queue, max_loaded_models=getattr(ns, "max_loaded_models", 3))


def run_from_args(ns: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly; `--workers N` serves N workers on N ports."""
    asyncio.run(serve_fleet(ns) if getattr(ns, "workers", 1) > 1 else _serve(ns))


async def _serve(ns: argparse.Namespace) -> None:
    worker = worker_from_args(ns)
    # handler_cancellation: a client that goes away stops its generation at once, as in Ollama
    runner = web.AppRunner(build_sim_app(worker), handler_cancellation=True, access_log=None, shutdown_timeout=2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the listening line: a caller may signal right after it
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, ns.host, ns.port, reuse_address=True).start()
        except OSError as exc:  # one line, not a traceback: the port is taken, or no such address
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            print(f"sim-worker {ns.name}: cannot listen on {ns.host}:{ns.port}: {why}", file=sys.stderr)
            raise SystemExit(1) from None
        port = runner.addresses[0][1]
        print(f"sim-worker {ns.name} ({ns.tier}, {len(worker.disk)} models) listening on http://{ns.host}:{port}",
              flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
