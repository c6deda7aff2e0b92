"""S7 of the GPU benchmark (issue 18): gateway processes in front of several llama-server workers
on the one GPU. `gpu_bench.py --processes N` runs it instead of S6/S4/S5.

W workers (default 4) serve `bench-1b`, `-ngl 99`, each with its own slots and two cores. Closed
loops of W x slots concurrent streamed /v1 calls (answers forced to `S7_PREDICT` tokens) run for
`S7_S` seconds in each arm: straight at the workers (client k at worker k mod W: the sum of
direct), through one gateway process (today's embedded mode, no Redis), and through
`serve --processes N` (N gateways on one port, sharing state through the private redis-server
the supervisor starts). Both gateways get the same cores. The load comes from several client
processes on cores of their own, so one Python client is not the bottleneck being measured.

Gateway CPU is read from /proc (utime + stime of the gateway's process tree, redis-server apart)
before and after each arm: CPU-ms per request. Owns no pure figure maths beyond the per-arm
summary; plan.py's `summarise` makes the figures of the calls.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tests.perf.gpu.fleet import Fleet, gpu_flags
from tests.perf.gpu.load import chat, chat_body, closed_loop, short_prompt
from tests.perf.gpu.plan import MODEL_1B, Call, Profile, summarise

GATEWAY_CORES, CLIENT_CORES = "0-3", (12, 13, 14, 15)  # workers get 4-11, two each (16-core device)


def s7_plan(p: Profile, workers: int) -> list[tuple]:
    """The worker rows for Fleet.start_workers: W 1B workers, two cores each from core 4."""
    flags = gpu_flags(p) + ("-t", "2")
    return [(f"gpu-{i}", "gpu", MODEL_1B, flags, f"{4 + 2 * i},{5 + 2 * i}", p.gpu_parallel, p.gpu_ctx)
            for i in range(workers)]


# ---------------------------------------------------------------- /proc CPU of a process tree

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds) of one process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
    return name, int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICK  # ppid, utime, stime


def tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of `root` and every descendant alive now, by pid."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            table[int(entry)] = st
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out[pid] = (table[pid][0], table[pid][2])
            todo += [child for child, (_, ppid, _) in table.items() if ppid == pid]
    return out


def cpu_delta(before: dict, after: dict, ok: int) -> dict:
    """The gateway's CPU over an arm: python processes (gateways and supervisor) and redis-server."""
    per = {pid: round(cpu - before.get(pid, (name, 0.0))[1], 3) for pid, (name, cpu) in after.items()}
    redis = sum(v for pid, v in per.items() if "redis" in after[pid][0])
    gateway = sum(per.values()) - redis
    return {"gateway_cpu_s": round(gateway, 3), "redis_cpu_s": round(redis, 3),
            "by_process_cpu_s": {f"{after[pid][0]}:{pid}": v for pid, v in sorted(per.items())},
            "gateway_cpu_ms_per_request": round(1000 * gateway / ok, 3) if ok else None,
            "with_redis_cpu_ms_per_request": round(1000 * (gateway + redis) / ok, 3) if ok else None}


# ---------------------------------------------------------------- client processes

def _client(urls: list[str], concurrency: int, duration_s: float, max_tokens: int, timeout_s: float, seed: int,
            start_at: float, core: int | None) -> tuple[list[Call], float]:
    """One client process: a closed loop per url, starting together at the wall-clock `start_at`."""
    if core is not None:
        try:
            os.sched_setaffinity(0, {core})
        except OSError:
            pass

    async def run() -> tuple[list[Call], float]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            done = await asyncio.gather(*(closed_loop(http, url, concurrency, duration_s, max_tokens, timeout_s,
                                                      seed=seed + i) for i, url in enumerate(urls)))
        return [c for calls, _ in done for c in calls], max(wall for _, wall in done)

    return asyncio.run(run())


class Clients:
    """K client processes (spawned once, reused by every arm)."""

    def __init__(self, count: int, pin: bool) -> None:
        self.count, self.pin = count, pin
        self.pool = ProcessPoolExecutor(max_workers=count, mp_context=get_context("spawn"))

    async def run(self, targets: list[list[str]], concurrency: int, duration_s: float, max_tokens: int,
                  timeout_s: float, seed: int) -> tuple[list[Call], float]:
        """targets[k]: the urls of client k, each with `concurrency` streams in flight."""
        loop, start_at = asyncio.get_running_loop(), time.time() + 1.0
        jobs = [loop.run_in_executor(self.pool, _client, urls, concurrency, duration_s, max_tokens, timeout_s,
                                     seed + 100 * k, start_at,
                                     CLIENT_CORES[k % len(CLIENT_CORES)] if self.pin else None)
                for k, urls in enumerate(targets)]
        done = await asyncio.gather(*jobs)
        return [c for calls, _ in done for c in calls], max(wall for _, wall in done)

    async def warm(self) -> None:  # the spawn and imports happen before any timed arm
        await asyncio.gather(*(asyncio.get_running_loop().run_in_executor(self.pool, time.sleep, 0.1)
                               for _ in range(self.count)))

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


# ---------------------------------------------------------------- the scenario

async def s7_processes(fleet: Fleet, http, p: Profile, processes: int, budget, log) -> dict:
    """Arms direct, gateway x1, gateway xN (and direct again when time allows, to see drift)."""
    arm_s, predict = (20.0, 64) if p.gpu else (3.0, 16)
    workers = [fleet.url(name) for name in fleet.servers]
    per_worker = p.gpu_parallel
    clients = Clients(len(workers), pin=p.gpu)
    result: dict = {"workers": len(workers), "slots_per_worker": per_worker, "concurrency": per_worker * len(workers),
                    "max_tokens": predict, "ignore_eos": True, "arm_s": arm_s, "client_processes": clients.count,
                    "gateway_cores": GATEWAY_CORES if p.gpu else "any", "processes": processes, "arms": {}}
    try:
        await clients.warm()
        await asyncio.gather(*(chat(http, url, chat_body(short_prompt(random.Random(i)), 8), p.timeout_s)
                               for url in workers for i in range(per_worker)))
        plan = [("direct", 0), ("gateway-1", 1), (f"gateway-{processes}", processes), ("direct-again", 0)]
        for seed, (arm, count) in enumerate(plan, start=70):
            need = arm_s + (30 if count else 5)
            if budget.left() < need + 10:
                result.setdefault("skipped_arms", []).append(arm)
                continue
            result["arms"][arm] = await _arm(fleet, http, clients, workers, count, arm_s, predict, p, seed)
            log(f"S7: {arm}: {_line(result['arms'][arm])}")
    finally:
        clients.close()
        await fleet.stop_gateway(grace_s=10)
    result["compare"] = _compare(result["arms"], processes)
    return result


async def _arm(fleet: Fleet, http, clients: Clients, workers: list[str], processes: int, arm_s: float,
               predict: int, p: Profile, seed: int) -> dict:
    """One timed arm; `processes` 0: straight at the workers."""
    per_worker = p.gpu_parallel
    if processes == 0:
        targets = [[url] for url in workers]
        calls, wall = await clients.run(targets, per_worker, arm_s, predict, p.timeout_s, seed)
        return summarise(calls, wall, predict)
    await fleet.stop_gateway(grace_s=10)
    fleet.start_gateway(processes=processes, cpus=GATEWAY_CORES if p.gpu else None)
    await fleet.wait_gateway(http, seconds=90)
    await asyncio.gather(*(chat(http, fleet.gateway_url, chat_body(short_prompt(random.Random(i)), 8), p.timeout_s)
                           for i in range(4 * processes)))  # every process has seen traffic
    targets = [[fleet.gateway_url] for _ in workers]
    t0, idle_before = time.perf_counter(), tree_cpu(fleet.gateway.pid)
    await asyncio.sleep(5.0 if p.gpu else 1.0)  # probes and state sync cost CPU with no traffic too
    before, idle_s = tree_cpu(fleet.gateway.pid), time.perf_counter() - t0
    idle = cpu_delta(idle_before, before, 0)
    calls, wall = await clients.run(targets, per_worker, arm_s, predict, p.timeout_s, seed)
    after = tree_cpu(fleet.gateway.pid)
    out = summarise(calls, wall, predict)
    out["cpu"] = cpu_delta(before, after, out["ok"])
    idle_per_s = (idle["gateway_cpu_s"] + idle["redis_cpu_s"]) / idle_s
    out["cpu"]["idle_cpu_s_per_s"] = round(idle_per_s, 4)
    busy = out["cpu"]["gateway_cpu_s"] + out["cpu"]["redis_cpu_s"] - idle_per_s * wall
    out["cpu"]["net_of_idle_cpu_ms_per_request"] = round(1000 * busy / out["ok"], 3) if out["ok"] else None
    return out


def _line(arm: dict) -> str:
    cpu = arm.get("cpu") or {}
    return (f"{arm['ok']} ok {arm['failed']} failed, {arm['tokens_per_s']} tok/s, {arm['requests_per_s']} req/s, "
            f"TTFT p50 {arm['ttft_s']['p50']} p99 {arm['ttft_s']['p99']}, by worker {arm['by_worker']}"
            + (f", gateway CPU {cpu.get('gateway_cpu_ms_per_request')} ms/request (+redis "
               f"{cpu.get('redis_cpu_s')} s; idle {cpu.get('idle_cpu_s_per_s')} CPU-s/s, net of idle "
               f"{cpu.get('net_of_idle_cpu_ms_per_request')} ms/request)" if cpu else ""))


def _compare(arms: dict, processes: int) -> dict:
    direct = arms.get("direct")
    out = {}
    for name in ("gateway-1", f"gateway-{processes}"):
        arm = arms.get(name)
        if not arm or not direct or not direct.get("tokens_per_s"):
            continue
        out[name] = {"tokens_per_s": arm["tokens_per_s"], "direct_tokens_per_s": direct["tokens_per_s"],
                     "throughput_ratio": round(arm["tokens_per_s"] / direct["tokens_per_s"], 4),
                     "ttft_p99_s": arm["ttft_s"]["p99"], "direct_ttft_p99_s": direct["ttft_s"]["p99"],
                     "gateway_cpu_ms_per_request": (arm.get("cpu") or {}).get("gateway_cpu_ms_per_request"),
                     "net_of_idle_cpu_ms_per_request": (arm.get("cpu") or {}).get("net_of_idle_cpu_ms_per_request")}
    return out


def render(summary: dict) -> str:
    """The readable table of S7."""
    s7 = summary.get("s7") or {}
    out = [f"== gpu_bench S7 ({summary.get('profile')}): {s7.get('workers')} workers x {s7.get('slots_per_worker')} "
           f"slots, {s7.get('max_tokens')}-token answers, {s7.get('arm_s')} s per arm ==",
           "arm            tok/s    req/s  TTFT p50 ms  TTFT p99 ms  failed  gateway CPU ms/req (+redis; net of idle)"]
    ms = lambda x: "-" if x is None else f"{1000 * x:.1f}"  # noqa: E731
    for name, arm in (s7.get("arms") or {}).items():
        cpu = arm.get("cpu") or {}
        out.append(f"{name:<13} {arm['tokens_per_s']:>7} {arm['requests_per_s']:>8} {ms(arm['ttft_s']['p50']):>12} "
                   f"{ms(arm['ttft_s']['p99']):>12} {arm['failed']:>7}  {cpu.get('gateway_cpu_ms_per_request', '-')}"
                   f" ({cpu.get('with_redis_cpu_ms_per_request', '-')}; "
                   f"{cpu.get('net_of_idle_cpu_ms_per_request', '-')})")
    for name, c in (s7.get("compare") or {}).items():
        out.append(f"{name}: {c['throughput_ratio']} of direct tokens/s")
    if summary.get("error"):
        out.append(f"error: {summary['error']}")
    return "\n".join(out)
