"""What sharing state through Redis costs one request (not a test): S1 of the hop benchmark
(tests/perf/hop_bench.py: nginx answering /api/chat from memory, wrk -c1, non-streamed) through
one gateway replica without BEACON_REDIS_URL and one with it, side by side in one run.

Three requests, each through both: a plain one (Redis stays off the request path: only the
background sync runs, every BEACON_REDIS_SYNC_S), one with an X-Session-Id header (one Redis
round trip before routing to find the conversation's worker, one in the background after the
answer to remember it) and one with a client key that has max_concurrent and requests_per_minute
set (two Lua calls on the way in and an HINCRBY on the way out, all awaited before the answer
goes out). The gateways run with [routing] affinity = false, so that the plain request has no
conversation: with the default (true), a chat's system prompt and first turn name its
conversation, and it costs what the X-Session-Id request costs.

The gateways are pinned to core 0, each measured alone in its turn; nginx, wrk and a real
redis-server (loopback TCP, no persistence) share core 1. Rounds interleave every path, so drift
on the shared machine hits them alike; figures are medians of the rounds, and p99 also that of
the best round (other work on the machine only adds to a p99). Each gateway logs its JSON
request.done line per request, as by default.

    python -m tests.perf.sharing_cost_bench [--rounds 5] [--seconds 4]
                                            [--json tests/perf/results/sharing-cost-bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gateway.access import hash_key
from tests.perf.hop_bench import CHAT, Procs, start_upstream
from tests.perf.procs import free_port, wait_http

KEY = "sharing-cost-bench-key"
REQUESTS = {  # name -> (gateway config, headers)
    "plain": ("open", {}),
    "session": ("open", {"X-Session-Id": "bench-conversation-1"}),
    "key with limits": ("keyed", {"Authorization": f"Bearer {KEY}"}),
}
CLIENT = (f'[[clients]]\nname = "bench"\nkey_sha256 = "{hash_key(KEY)}"\n'
          "max_concurrent = 1000\nrequests_per_minute = 100000000\n")  # limits that count, never refuse


def start_redis(procs: Procs) -> int:
    port = free_port()
    procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--protected-mode", "no", "--dir", str(procs.tmp)], 1)
    for _ in range(300):
        answer = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout
        if answer.strip() == "PONG":
            return port
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def start_gateway(procs: Procs, kind: str, redis_port: int | None) -> str:
    config = procs.tmp / f"{kind}-{'redis' if redis_port else 'alone'}.toml"
    config.write_text(f'[[workers]]\nname = "up"\nurl = "http://127.0.0.1:{procs.up_port}"\nkind = "ollama"\n'
                      "max_inflight = 1024\n[health]\ninterval_s = 5\n[routing]\naffinity = false\n"
                      + (CLIENT if kind == "keyed" else ""))
    env = {"BEACON_LOG_FORMAT": "json"}
    if redis_port:  # a prefix of its own: each gateway is a fleet of one replica
        env |= {"BEACON_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "BEACON_REDIS_PREFIX": f"cost-{kind}:"}
    port = free_port()
    procs.start([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                0, env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/api/version", 60)
    mode = "shared" if redis_port else "alone"
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        if f'beacon_cluster_mode{{mode="{mode}"}} 1.0' not in resp.read().decode():
            raise RuntimeError(f"{url} is not in cluster mode {mode}")
    return url


def redis_commands(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "stats"], capture_output=True, text=True).stdout
    return int(next(line for line in out.splitlines() if line.startswith("total_commands_processed:")).split(":")[1])


def wrk(base: str, name: str, headers: dict, seconds: float, tmp: Path) -> dict:
    """wrk -c1 on core 1 for `seconds`: requests/s and latency p50/p99 in microseconds."""
    script = tmp / f"{name.replace(' ', '-')}.lua"
    lines = [f"wrk.method = \"POST\"\nwrk.body = {json.dumps(json.dumps(CHAT))}",
             'wrk.headers["Content-Type"] = "application/json"',
             *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
             'done = function(summary, latency, requests)\n'
             '  io.write(string.format("JSON {\\"rps\\": %f, \\"p50\\": %d, \\"p99\\": %d, \\"errors\\": %d, '
             '\\"non2xx\\": %d}\\n", summary.requests / (summary.duration / 1e6), latency:percentile(50), '
             'latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write + '
             'summary.errors.timeout, summary.errors.status))\nend']
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s", "-s", str(script),
                          base + "/api/chat"], capture_output=True, text=True, timeout=seconds + 30).stdout
    line = next((x for x in out.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary for {name}: {out[-300:]}")
    data = json.loads(line[5:])
    return {"rps": round(data["rps"], 1), "p50_us": data["p50"], "p99_us": data["p99"],
            "errors": data["errors"] + data["non2xx"]}


def measure(paths: dict[str, tuple[str, dict]], redis_port: int, rounds: int, seconds: float, tmp: Path) -> dict:
    """Every path once a round, in the same order, `rounds` times; medians per path."""
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for i in range(rounds):
        for name, (base, headers) in paths.items():
            before = redis_commands(redis_port)
            run = wrk(base, name, headers, seconds, tmp)
            run["redis_commands"] = redis_commands(redis_port) - before
            runs[name].append(run)
        print(f"round {i + 1}/{rounds} done", flush=True)
    out = {}
    for name, samples in runs.items():
        requests = max(1.0, sum(r["rps"] * round(seconds) for r in samples))
        out[name] = {"p50_us": statistics.median(r["p50_us"] for r in samples),
                     "p99_us": statistics.median(r["p99_us"] for r in samples),
                     "p99_best_us": min(r["p99_us"] for r in samples),  # others' work on the machine only adds
                     "rps": statistics.median(r["rps"] for r in samples),
                     "errors": sum(r["errors"] for r in samples),
                     "redis_commands_per_request": round(sum(r["redis_commands"] for r in samples) / requests, 2),
                     "rounds": samples}
    return out


def compare(measured: dict) -> list[dict]:
    direct = measured["direct"]
    rows = []
    for name in REQUESTS:
        alone, shared = measured[f"{name}, alone"], measured[f"{name}, redis"]
        rows.append({"request": name, "alone_p50_us": alone["p50_us"], "redis_p50_us": shared["p50_us"],
                     "sharing_adds_p50_us": shared["p50_us"] - alone["p50_us"],
                     "alone_p99_us": alone["p99_us"], "redis_p99_us": shared["p99_us"],
                     "sharing_adds_p99_us": shared["p99_us"] - alone["p99_us"],
                     "alone_p99_best_us": alone["p99_best_us"], "redis_p99_best_us": shared["p99_best_us"],
                     "sharing_adds_p99_best_us": shared["p99_best_us"] - alone["p99_best_us"],
                     "gateway_adds_p50_us_alone": alone["p50_us"] - direct["p50_us"],
                     "gateway_adds_p50_us_redis": shared["p50_us"] - direct["p50_us"],
                     "redis_commands_per_request": shared["redis_commands_per_request"],
                     "goal_met": shared["p50_us"] - alone["p50_us"] <= 300})
    return rows


def print_rows(rows: list[dict], direct: dict) -> None:
    print(f"\ndirect to the worker: p50 {direct['p50_us']} us, p99 {direct['p99_us']} us (wrk -c1)")
    print(f"{'request':<16} {'p50 alone':>10} {'p50 redis':>10} {'adds p50':>9} {'p99 alone':>10} {'p99 redis':>10} "
          f"{'adds p99':>9} {'best-round p99 alone / redis':>29} {'Redis cmds/req':>15}")
    for r in rows:
        print(f"{r['request']:<16} {r['alone_p50_us']:>8} us {r['redis_p50_us']:>8} us "
              f"{r['sharing_adds_p50_us']:>+6} us {r['alone_p99_us']:>8} us {r['redis_p99_us']:>8} us "
              f"{r['sharing_adds_p99_us']:>+6} us {r['alone_p99_best_us']:>13} / {r['redis_p99_best_us']:>6} us "
              f"{r['redis_commands_per_request']:>15}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="each wrk run")
    parser.add_argument("--json", default="tests/perf/results/sharing-cost-bench.json")
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "redis-server", "redis-cli", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed (Debian: nginx-light, wrk, redis-server, util-linux)")
    procs = Procs()
    started = time.time()
    try:
        paths = {"direct": (start_upstream(procs, streams=False), {})}
        redis_port = start_redis(procs)
        version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
        gateways = {(kind, shared): start_gateway(procs, kind, redis_port if shared else None)
                    for kind in ("open", "keyed") for shared in (False, True)}
        for name, (kind, headers) in REQUESTS.items():
            for shared in (False, True):
                paths[f"{name}, {'redis' if shared else 'alone'}"] = (gateways[(kind, shared)], headers)
        measured = measure(paths, redis_port, args.rounds, args.seconds, procs.tmp)
    finally:
        procs.stop()
    rows = compare(measured)
    print_rows(rows, measured["direct"])
    print(f"\nthrough a real redis-server {version.removeprefix('v=')} on loopback TCP (core 1 with nginx and wrk); "
          "Redis commands per request include the background sync")
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load": os.getloadavg()},
              "settings": vars(args), "redis_server": version.removeprefix("v="), "results": rows,
              "paths": measured, "wall_s": round(time.time() - started, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json} in {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
