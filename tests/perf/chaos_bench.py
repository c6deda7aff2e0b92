"""Chaos benchmark (not a test): 3 simulated GPU workers + 1 CPU worker behind the real gateway
(control loop running), open-loop traffic at ~80% of capacity, random faults for a bounded time.

    python -m tests.perf.chaos_bench [--seconds 60] [--rate 30] [--json out/chaos-bench.json]

Faults: crash (the worker's server stops; it restarts empty), hang, bursts of 500s, a 20x
slowdown, a lost GPU, streams dropped mid-answer. Reports client-visible errors, failures of
requests that had not received a first byte, timeouts, time to mark a worker down and to bring
it back, duplicate generations, and the share served by the CPU tier. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import logs, runner
from gateway.app import build_app
from gateway.config import parse_config
from gateway.context import GATEWAY
from gateway.settings import Settings
from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.perf.procs import free_port

FAULTS = ("crash", "hang", "error", "slow", "gpu_lost", "drop")
MODELS = "llama3.2:1b=1.3GiB"
CONFIG = """
[models."llama3.2:1b"]
keep_warm = 3
[warmer]
interval_s = 1
[health]
interval_s = 0.5
timeout_s = 0.5
unhealthy_threshold = 2
healthy_threshold = 2
[failover]
gpu_first_byte_timeout_s = 1.0
cpu_first_byte_timeout_s = 10.0
stream_idle_timeout_s = 1.0
connect_timeout_s = 0.5
[cpu]
max_expected_s = 10
[outlier]
consecutive_failures = 3
eject_s = 3
"""


class Worker:
    """One simulated worker on a fixed port that can crash and come back empty."""

    def __init__(self, name: str, tier: str, rate: float, port: int) -> None:
        self.name, self.tier, self.rate, self.port = name, tier, rate, port
        self.sim: SimWorker | None = None
        self.app_runner: web.AppRunner | None = None
        self.completed_before = 0

    async def start(self) -> None:
        self.sim = SimWorker(name=self.name, models=parse_models(MODELS), tier=self.tier, tokens_per_s=self.rate,
                             load_s_per_gib=0.2, num_parallel=4)
        self.app_runner, _ = await runner.start(build_sim_app(self.sim), "127.0.0.1", self.port)

    async def crash(self) -> None:
        self.completed_before += self.sim.stats.completed
        await self.app_runner.cleanup()

    @property
    def completed(self) -> int:
        return self.completed_before + (self.sim.stats.completed if self.sim else 0)


async def one_request(http: aiohttp.ClientSession, url: str, rng: random.Random, results: list) -> None:
    stream = rng.random() < 0.5
    body = {"model": "llama3.2:1b", "prompt": f"q{rng.random()}", "stream": stream, "options": {"num_predict": 40}}
    started, first, record = time.monotonic(), None, {"stream": stream}
    try:
        async with http.post(url + "/api/generate", json=body, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            record["status"], record["worker"] = resp.status, resp.headers.get("X-Beacon-Worker")
            async for line in resp.content:
                first = first or time.monotonic()
                record["last"] = line
        record["ok"] = resp.status == 200 and b'"done":true' in record.get("last", b"").replace(b" ", b"")
        record["cut"] = resp.status == 200 and b'"error"' in record.get("last", b"")
    except TimeoutError:
        record["timeout"] = True
    except aiohttp.ClientError as exc:
        record["client_error"] = type(exc).__name__
    record["started"] = first is not None and record.get("status") == 200  # an answer began to stream
    record["ttft_s"] = None if first is None else first - started
    if not record.get("ok") and record.get("status", 200) != 200:
        record["error"] = record.get("last", b"")[:200].decode("utf-8", "replace")
    record.pop("last", None)
    results.append(record)


async def traffic(url: str, rate: float, seconds: float, seed: int, results: list) -> None:
    rng = random.Random(seed)
    deadline, tasks = time.monotonic() + seconds, []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        while time.monotonic() < deadline:
            tasks.append(asyncio.create_task(one_request(http, url, rng, results)))
            await asyncio.sleep(rng.expovariate(rate))
        await asyncio.gather(*tasks)


def first_choice(gw, name: str) -> bool:
    """Serving and not degraded: the worker ranks with the healthy GPU workers."""
    w = gw.holder.current.worker(name)
    return w.serving and not (w.degraded or gw.inflight.slow_reason(name))


async def watch(gw, name: str, fault_at: float, healed_at_box: list, out: dict) -> None:
    """Time until the gateway stops ranking the worker first, and until it does again after healing."""
    while first_choice(gw, name) and time.monotonic() - fault_at < 10:
        await asyncio.sleep(0.02)
    out["detect_s"] = time.monotonic() - fault_at if not first_choice(gw, name) else None
    while not healed_at_box:
        await asyncio.sleep(0.02)
    while not first_choice(gw, name) and time.monotonic() - healed_at_box[0] < 15:
        await asyncio.sleep(0.02)
    serving = first_choice(gw, name)
    left = out["detect_s"] is not None
    out["recover_s"] = (time.monotonic() - healed_at_box[0] if serving else None) if left else 0.0


async def chaos(workers: list[Worker], gw, seconds: float, seed: int, log: list) -> None:
    rng = random.Random(seed + 1)
    deadline = time.monotonic() + seconds - 6
    await asyncio.sleep(3)  # a calm start: learn rates and slots
    while time.monotonic() < deadline:
        worker, fault = rng.choice(workers[:3]), rng.choice(FAULTS)
        entry, healed = {"worker": worker.name, "fault": fault}, []
        fault_at = time.monotonic()
        if fault == "crash":
            await worker.crash()
        else:
            worker.sim.set_mode(fault)
        watcher = asyncio.create_task(watch(gw, worker.name, fault_at, healed, entry))
        await asyncio.sleep(3)
        if fault == "crash":
            await worker.start()
        else:
            worker.sim.set_mode("ok")
        healed.append(time.monotonic())
        await watcher
        log.append(entry)
        await asyncio.sleep(1)


def report(results: list, faults: list, workers: list[Worker], args) -> dict:
    n = len(results)
    failed = [r for r in results if not r.get("ok")]
    unstarted_failed = [r for r in failed if not r["started"]]
    ttfts = sorted(r["ttft_s"] for r in results if r.get("ttft_s") is not None)
    ok = sum(1 for r in results if r.get("ok"))
    crash_detect = [f["detect_s"] for f in faults if f["fault"] == "crash" and f.get("detect_s") is not None]
    hang_detect = [f["detect_s"] for f in faults if f["fault"] == "hang" and f.get("detect_s") is not None]
    return {
        "settings": vars(args), "requests": n, "succeeded": ok, "client_visible_errors": len(failed),
        "failed_not_yet_started": len(unstarted_failed), "cut_streams": sum(1 for r in results if r.get("cut")),
        "timeouts": sum(1 for r in results if r.get("timeout")),
        "timeout_rate": round(sum(1 for r in results if r.get("timeout")) / max(1, n), 4),
        "cpu_share": round(sum(1 for r in results if r.get("worker") == "cpu0") / max(1, n), 4),
        "duplicate_generations": max(0, sum(w.completed for w in workers) - ok),
        "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "ttft_p99_s": round(ttfts[int(0.99 * (len(ttfts) - 1))], 3) if ttfts else None,
        "detect_crash_s_max": round(max(crash_detect), 2) if crash_detect else None,
        "detect_hang_s_max": round(max(hang_detect), 2) if hang_detect else None,
        "failure_statuses": dict(collections.Counter(str(r.get("status")) for r in failed)),
        "faults": faults,
        "unstarted_failure_samples": unstarted_failed[:5],
    }


async def main_async(args) -> dict:
    logs.configure("json", "warning")
    ports = [free_port() for _ in range(5)]
    workers = [Worker(f"gpu{i}", "gpu", 200.0, ports[i]) for i in range(3)] + [Worker("cpu0", "cpu", 10.0, ports[3])]
    for w in workers:
        await w.start()
    text = "".join(f'[[workers]]\nname = "{w.name}"\nurl = "http://127.0.0.1:{w.port}"\nkind = "ollama"\n'
                   f'tier = "{w.tier}"\n' for w in workers) + CONFIG
    app = build_app(Settings(), parse_config(text.encode()))
    app_runner, _ = await runner.start(app, "127.0.0.1", ports[4])
    gw = app[GATEWAY]
    results, faults = [], []
    await asyncio.gather(traffic(f"http://127.0.0.1:{ports[4]}", args.rate, args.seconds, args.seed, results),
                         chaos(workers, gw, args.seconds, args.seed, faults))
    await app_runner.cleanup()
    for w in workers:
        if w.app_runner:
            await w.app_runner.cleanup()
    return report(results, faults, workers, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=45.0,
                        help="requests per second (~75%% of 3 GPU workers' 60 req/s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="out/chaos-bench.json")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    summary = {k: v for k, v in result.items() if k not in ("faults", "settings", "unstarted_failure_samples")}
    print(json.dumps(summary, indent=2))
    for f in result["faults"]:
        print(f"  {f['fault']:9} on {f['worker']}: out of routing after {f.get('detect_s')} s, "
              f"back {f.get('recover_s')} s after healing")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
