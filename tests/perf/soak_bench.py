"""Soak benchmark (not a test): 3 simulated GPU workers, 1 CPU worker and the gateway, each a real
process on 127.0.0.1, then a bounded run of mixed traffic with GPU workers killed (-9) and restarted
on the same port (evenly over the run: traffic waits at a restart point until the previous restart
has finished, so fast traffic cannot outrun them); every request is accounted for, and the
gateway's memory, descriptors and asyncio tasks are compared between a post-warm-up baseline and
the end. The bookkeeping that classifies each request is tests/perf/soak_accounting.py.

    python -m tests.perf.soak_bench [--requests 10000] [--concurrency 32] [--seed 1]
                                    [--json tests/perf/results/soak-bench.json]

Each request ends as exactly one of: completed, refused (4xx/503 with a JSON error body), cut (an
error line/event after the first byte, only while its worker was being killed), disconnected (the
client closed after one chunk, on purpose) or LOST (anything else: a 500, a client timeout, a
connection error, a stream that ended with neither done nor an error). Exit code 1 when any goal
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import time
import urllib.request
from pathlib import Path

import aiohttp

from tests.perf.procs import Procs, free_port, pct, wait_http
from tests.perf.soak_accounting import STREAMS, account, body_valid, classify, is_json_error, note_line

CHAT_MODEL, EMBED_MODEL = "llama3.2:1b", "nomic-embed-text:latest"
SIM_MODELS = f"{CHAT_MODEL}=1.3GiB,{EMBED_MODEL}=0.3GiB"
KINDS = {  # kind: weight in the mix (percent)
    "chat_stream": 18, "generate_stream": 12, "chat": 9, "generate": 8, "embed": 10, "openai_stream": 12,
    "openai": 8, "tags": 4, "ps": 4, "disconnect": 7, "unknown_model": 4, "bad_json": 4,
}
CONFIG = """
[models."llama3.2:1b"]
keep_warm = 3
[health]
interval_s = 0.5
timeout_s = 0.5
unhealthy_threshold = 2
healthy_threshold = 2
[failover]
connect_timeout_s = 0.5
first_byte_timeout_s = 5
stream_idle_timeout_s = 5
[outlier]
consecutive_failures = 3
eject_s = 3
"""
METRICS = ("process_resident_memory_bytes", "process_open_fds", "beacon_event_loop_tasks")


# ---- traffic -------------------------------------------------------------------------------------

def request_for(kind: str, rng: random.Random, prompts: int = 0) -> tuple[str, str, bytes | None]:
    """`prompts` > 0 draws from that many conversations; 0 makes every prompt new (the worst case for
    the gateway's session-affinity memory, an LRU of 65,536 conversations)."""
    prompt = f"soak {rng.randrange(prompts)}" if prompts else f"soak {rng.random():.6f}"
    n = rng.choice((8, 32, 64, 128))
    messages = [{"role": "user", "content": prompt}]
    stream = kind in STREAMS
    if kind in ("chat_stream", "chat", "disconnect"):
        body = {"model": CHAT_MODEL, "messages": messages, "stream": stream, "options": {"num_predict": n}}
        return "POST", "/api/chat", json.dumps(body).encode()
    if kind in ("generate_stream", "generate"):
        body = {"model": CHAT_MODEL, "prompt": prompt, "stream": stream, "options": {"num_predict": n}}
        return "POST", "/api/generate", json.dumps(body).encode()
    if kind in ("openai_stream", "openai"):
        body = {"model": CHAT_MODEL, "messages": messages, "stream": stream, "max_tokens": n}
        return "POST", "/v1/chat/completions", json.dumps(body).encode()
    if kind == "embed":
        return "POST", "/api/embed", json.dumps({"model": EMBED_MODEL, "input": [prompt, prompt[::-1]]}).encode()
    if kind in ("tags", "ps"):
        return "GET", f"/api/{kind}", None
    if kind == "unknown_model":
        return "POST", "/api/generate", json.dumps({"model": "no-such-model:7b", "prompt": prompt}).encode()
    return "POST", "/api/chat", b'{"model": "llama3.2:1b", "messages": ['  # bad_json


async def one_request(http: aiohttp.ClientSession, base: str, i: int, kind: str, rng: random.Random,
                      prompts: int = 0) -> dict:
    method, path, body = request_for(kind, rng, prompts)
    rec = {"i": i, "kind": kind, "started": time.monotonic(), "first_byte": None}
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        async with http.request(method, base + path, data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            rec["status"], rec["worker"] = resp.status, resp.headers.get("X-Beacon-Worker")
            if resp.status != 200 or kind not in STREAMS:
                data = await resp.read()
                rec["first_byte"] = time.monotonic()
                rec["json_error"], rec["valid"] = is_json_error(data), body_valid(kind, data)
                if resp.status != 200:
                    rec["last"] = data[:200].decode("utf-8", "replace")
            elif kind == "disconnect":
                line = await resp.content.readline()
                rec["first_byte"] = time.monotonic()
                note_line(rec, line, sse=False)
                rec["disconnected"] = bool(line)
                resp.close()  # drop the connection mid-stream, as a client that goes away does
            else:
                async for line in resp.content:
                    rec["first_byte"] = rec["first_byte"] or time.monotonic()
                    note_line(rec, line, sse=STREAMS[kind] == "sse")
    except TimeoutError:
        rec["exc"] = "a client timeout (30 s)"
    except aiohttp.ClientError as exc:
        rec["exc"] = f"{type(exc).__name__}: {exc}"[:200]
    rec["ended"] = time.monotonic()
    return rec


class Phase:
    """One closed-loop run of `total` requests; `gates[k]` holds requests from index k until its event."""

    def __init__(self, total: int, seed: int, prompts: int, gates: dict[int, asyncio.Event] | None = None) -> None:
        self.total, self.seed, self.prompts, self.gates = total, seed, prompts, gates or {}
        self.sent, self.records = 0, []

    async def run(self, base: str, concurrency: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds  # past it no request starts; those in flight end by their timeout
        kinds, weights = list(KINDS), list(KINDS.values())
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def client() -> None:
                while self.sent < self.total and time.monotonic() < deadline:
                    for index, gate in self.gates.items():
                        if self.sent >= index and not gate.is_set():
                            await gate.wait()
                    if self.sent >= self.total:
                        return
                    i, self.sent = self.sent, self.sent + 1
                    rng = random.Random(self.seed * 1_000_003 + i)
                    self.records.append(await one_request(http, base, i, rng.choices(kinds, weights)[0], rng,
                                                        self.prompts))

            await asyncio.gather(*(client() for _ in range(concurrency)))


# ---- processes, restarts, measurements -----------------------------------------------------------

class Fleet:
    def __init__(self, procs: Procs, gpus: int, tokens_per_s: float) -> None:
        self.procs, self.tokens_per_s = procs, tokens_per_s
        self.workers = {f"gpu{i}": ("gpu", free_port()) for i in range(gpus)} | {"cpu0": ("cpu", free_port())}
        self.running: dict = {}
        self.kills: list[tuple[str, float]] = []
        self.gateway, self.port = None, free_port()

    def start_worker(self, name: str) -> None:
        tier, port = self.workers[name]
        rate = self.tokens_per_s if tier == "gpu" else self.tokens_per_s / 5
        self.running[name] = proc = self.procs.python(
            ["-m", "gateway", "sim-worker", "--port", str(port), "--name", name, "--models", SIM_MODELS,
             "--tier", tier, "--tokens-per-s", str(rate), "--load-s-per-gib", "0.01", "--num-parallel", "16"], name)
        wait_http(f"http://127.0.0.1:{port}/api/version", proc=proc)

    def start(self) -> None:
        for name in self.workers:
            self.start_worker(name)
        config = "".join(f'[[workers]]\nname = "{n}"\nurl = "http://127.0.0.1:{p}"\nkind = "ollama"\ntier = "{t}"\n'
                         f'max_inflight = {16 if t == "gpu" else 4}\n' for n, (t, p) in self.workers.items())
        (self.procs.tmp / "soak.toml").write_text(config + CONFIG)
        self.gateway = self.procs.python(["-m", "gateway", "serve", "--config", str(self.procs.tmp / "soak.toml"),
                                          "--listen", f"127.0.0.1:{self.port}"], "gateway")
        wait_http(f"http://127.0.0.1:{self.port}/health/live", proc=self.gateway)
        wait_http(f"http://127.0.0.1:{self.port}/health", ready=True)

    async def restart(self, name: str, down_s: float) -> None:
        self.kills.append((name, time.monotonic()))
        await asyncio.to_thread(Procs.kill, self.running[name])
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.start_worker, name)


def upstream_sockets(pid: int, worker_ports: set[int]) -> int:
    """Descriptors of the gateway that are TCP connections to a worker: its keep-alive pool, whose size
    follows the traffic's peak concurrency and the restarts, not a leak."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) in worker_ports:
                count += 1
    return count


def settled(pid: int, base: str, worker_ports: set[int], samples: int = 5) -> dict:
    """The last of a few samples 0.3 s apart, with counts at their lowest: a health probe round (one
    connection and one task per worker, every 0.5 s) caught in flight is not a leak."""
    taken = []
    for _ in range(samples):
        taken.append(sample(pid, base, worker_ports))
        time.sleep(0.3)
    low = ("fds_proc", "fds_metrics", "fds_upstream_pool", "fds_other", "tasks_metrics")
    return taken[-1] | {k: min(t[k] for t in taken) for k in low}


def sample(pid: int, base: str, worker_ports: set[int]) -> dict:
    """The gateway process seen from outside (/proc) and from inside (/metrics)."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = {m: float(v) for m, v in re.findall(r"^(\w+) ([0-9.e+]+)$", text, re.M) if m in METRICS}
    status = Path(f"/proc/{pid}/status").read_text()
    fds, upstream = len(list(Path(f"/proc/{pid}/fd").iterdir())), upstream_sockets(pid, worker_ports)
    return {"rss_bytes_proc": int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024,
            "rss_bytes_metrics": values.get("process_resident_memory_bytes"),
            "fds_proc": fds, "fds_metrics": values.get("process_open_fds"),
            "fds_upstream_pool": upstream, "fds_other": fds - upstream,
            "tasks_metrics": values.get("beacon_event_loop_tasks")}


async def soak(fleet: Fleet, args) -> dict:
    base = f"http://127.0.0.1:{fleet.port}"
    warm = Phase(args.warmup, args.seed + 7, args.prompts)
    await warm.run(base, args.concurrency, args.max_seconds)
    await asyncio.sleep(args.quiet_s)
    ports = {port for _, port in fleet.workers.values()}
    start = await asyncio.to_thread(settled, fleet.gateway.pid, base, ports)
    # Restarts at even points of the run; a restart must finish before traffic passes the next point.
    points = [int(args.requests * (k + 1) / (args.restarts + 1)) for k in range(args.restarts)]
    done = [asyncio.Event() for _ in points]
    main = Phase(args.requests, args.seed, args.prompts, {p: e for p, e in zip(points[1:] + [args.requests - 1], done)})
    gpus = [n for n, (tier, _) in fleet.workers.items() if tier == "gpu"]

    async def restarts() -> None:
        for k, point in enumerate(points):
            while main.sent < point and time.monotonic() - began < args.max_seconds:
                await asyncio.sleep(0.01)
            await fleet.restart(gpus[k % len(gpus)], args.down_s)
            done[k].set()

    began = time.monotonic()
    await asyncio.gather(main.run(base, args.concurrency, args.max_seconds), restarts())
    wall = time.monotonic() - began
    await asyncio.sleep(args.quiet_s)
    end = await asyncio.to_thread(settled, fleet.gateway.pid, base, ports)
    return report(warm, main, fleet.kills, start, end, wall, args)


def report(warm: Phase, main: Phase, kills: list, start: dict, end: dict, wall: float, args) -> dict:
    latency = collections.defaultdict(list)
    for rec in main.records:
        if classify(rec, kills)[0] == "completed":
            latency[rec["kind"]].append(rec["ended"] - rec["started"])
    t0 = min((r["started"] for r in main.records), default=0.0)
    acc, warm_acc = account(main.records, main.sent, kills), account(warm.records, warm.sent, [])
    rss = end["rss_bytes_proc"] / start["rss_bytes_proc"] - 1
    goals = {
        "nothing_lost": acc["lost"] == 0 and warm_acc["lost"] == 0 and acc["balanced"] and warm_acc["balanced"],
        "rss_growth_under_10pct": rss < 0.10,
        "no_fd_leak": end["fds_other"] <= start["fds_other"] + args.fd_slack
        and end["fds_upstream_pool"] <= start["fds_upstream_pool"] + args.pool_slack,
        "no_task_leak": end["tasks_metrics"] <= start["tasks_metrics"] + args.task_slack,
        "at_least_3_restarts": len(kills) >= 3,
    }
    return {"settings": vars(args), "wall_s": round(wall, 1), "requests_per_s": round(main.sent / wall, 1),
            "accounting": acc, "warmup_accounting": warm_acc,
            "restarts": [{"worker": w, "at_s": round(t - t0, 2)} for w, t in kills],
            "gateway_start": start, "gateway_end": end, "rss_growth": round(rss, 4),
            "latency_ms": {k: {"n": len(v), "p50": round(pct(v, 0.5) * 1000, 2), "p99": round(pct(v, 0.99) * 1000, 2)}
                           for k, v in sorted(latency.items())},
            "goals": goals}


def print_report(r: dict) -> None:
    a, s, e = r["accounting"], r["gateway_start"], r["gateway_end"]
    print(f"sent {a['sent']}  completed {a['completed']}  refused {a['refused']}  cut {a['cut']}  "
          f"disconnected {a['disconnected']}  LOST {a['lost']}  (balanced: {a['balanced']}; warm-up "
          f"{r['warmup_accounting']['sent']} sent, {r['warmup_accounting']['lost']} lost)")
    print(f"wall {r['wall_s']} s, {r['requests_per_s']} req/s; restarts: "
          + ", ".join(f"{x['worker']}@{x['at_s']}s" for x in r["restarts"]))
    print(f"{'gateway':22}{'start':>14}{'end':>14}")
    for key in ("rss_bytes_proc", "rss_bytes_metrics", "fds_proc", "fds_metrics", "fds_upstream_pool", "fds_other",
                "tasks_metrics"):
        print(f"{key:22}{s[key]:>14,.0f}{e[key]:>14,.0f}")
    print(f"RSS growth {r['rss_growth']:+.1%}")
    print(f"{'kind':17}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}   outcomes")
    for kind, lat in r["latency_ms"].items():
        print(f"{kind:17}{lat['n']:>6}{lat['p50']:>9}{lat['p99']:>9}   {a['by_kind'].get(kind)}")
    for kind, counts in a["by_kind"].items():
        if kind not in r["latency_ms"]:
            print(f"{kind:17}{'-':>6}{'-':>9}{'-':>9}   {counts}")
    for lost in a["lost_details"][:20]:
        print("LOST", lost)
    print("goals:", ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in r["goals"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="tests/perf/results/soak-bench.json")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--prompts", type=int, default=0, help="distinct conversations (0: every prompt new)")
    parser.add_argument("--gpus", type=int, default=3, choices=(2, 3))
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--down-s", type=float, default=3.0, help="seconds a killed worker stays down")
    parser.add_argument("--quiet-s", type=float, default=5.0, help="quiet before each measurement")
    parser.add_argument("--tokens-per-s", type=float, default=5000.0)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="wall-clock cap of the measured run")
    # Slack, measured after the same quiet at both ends as the lowest of 5 samples 0.3 s apart (a
    # probe round in flight is left out): descriptors other than upstream connections (listening
    # socket, epoll, log, the /metrics scrape's own socket) do not depend on traffic, and tasks are
    # the control loops' resident ones; 2 each allows for a warmer call or config check that spans
    # all 5 samples. Upstream keep-alive connections (idle up to 30 s) number at most the peak
    # concurrency, so the pool may differ by up to --concurrency between the two points.
    parser.add_argument("--fd-slack", type=int, default=2)
    parser.add_argument("--pool-slack", type=int, default=None, help="default: --concurrency")
    parser.add_argument("--task-slack", type=int, default=2)
    args = parser.parse_args()
    args.pool_slack = args.concurrency if args.pool_slack is None else args.pool_slack
    procs = Procs("soak-bench-")
    try:
        fleet = Fleet(procs, args.gpus, args.tokens_per_s)
        fleet.start()
        result = asyncio.run(soak(fleet, args))
    except BaseException:
        print(f"soak failed; process logs kept in {procs.tmp}")
        procs.stop(keep_logs=True)
        raise
    procs.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    print_report(result)
    print(f"wrote {args.json}")
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
