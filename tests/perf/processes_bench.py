"""`serve --processes 2` against one process, on this machine (not a test): S1 of the hop
benchmark (tests/perf/hop_bench.py, whose worker, wrk runs and request it reuses), as best
requests/s with p99 <= 10 ms over wrk -c 4..32; and, to tell the cost of sharing from the cost
of a second process, one process sharing state through a Redis of its own, and both setups with
`[routing] affinity = false` (no conversation key: no Redis call per request).

The gateways run at once in front of the same worker (nginx answering from memory, pinned to
core 1 with wrk, as in hop_bench) and are measured in alternation, concurrency by concurrency
and round by round, so drift on the shared machine hits all alike. The gateways are not
pinned: the one process takes one core, the two take what wrk and the worker leave of two. With
--processes the supervisor starts its private redis-server (BEACON_REDIS_URL unset), as an
operator's first run would. Each gateway logs its JSON request.done line per request. Each run
also records CPU per request (from /proc) of the gateway's processes, of its Redis, of the
worker and of wrk: what the two cores are shared between.

    python -m tests.perf.processes_bench [--quick] [--rounds 3] [--json tests/perf/results/processes-bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.perf.hop_bench import Procs, start_upstream, wrk
from tests.perf.hop_streams import cpu_seconds
from tests.perf.procs import free_port, wait_http

CONCURRENCY = (4, 8, 12, 16, 24, 32)  # past 32 no run keeps p99 under 10 ms on 2 cores
# name, processes, Redis ("solo": one of its own; a supervisor starts its private one), session affinity
CONFIGS = (("processes-1", 1, None, True), ("processes-1-redis", 1, "solo", True), ("processes-2", 2, None, True),
           ("processes-1-no-affinity", 1, None, False), ("processes-2-no-affinity", 2, None, False))
P99_LIMIT_US = 10_000


def start_gateway(procs: Procs, name: str, processes: int, env: dict | None = None,
                  affinity: bool = True) -> tuple[str, subprocess.Popen]:
    config = procs.tmp / f"{name}.toml"  # one each: every gateway watches its file
    config.write_text(f'[[workers]]\nname = "up"\nurl = "http://127.0.0.1:{procs.up_port}"\nkind = "ollama"\n'
                      "max_inflight = 1024\n[health]\ninterval_s = 5\n"
                      f"[routing]\naffinity = {str(affinity).lower()}\n")
    port = free_port()
    many = ["--processes", str(processes)] if processes > 1 else []
    proc = procs.start([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--listen",
                        f"127.0.0.1:{port}", *many], None, {"BEACON_LOG_FORMAT": "json", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/api/version", 60, proc)
    return url, proc


def redis_of(supervisor: int) -> int | None:
    """The private redis-server a supervisor started: its CPU is part of what sharing costs."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server" and \
                    int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == supervisor:
                return int(entry.name)
        except OSError:
            continue
    return None


def stop_gateway(proc: subprocess.Popen) -> None:
    """SIGTERM first: a supervisor stops its processes and Redis and removes its run folder."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass


def measured(base: str, name: str, conns: int, seconds: float, tmp: Path, pids: dict[str, int]) -> dict:
    """One wrk run, with the CPU it cost: the gateway's process tree (less its redis-server), that
    Redis, the worker's, and wrk's own."""
    before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = wrk(base, name, conns, seconds, tmp)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = max(1.0, run["rps"] * max(1, round(seconds)))
    for who, pid in pids.items():
        run[f"{who}_cpu_us_per_req"] = round((cpu_seconds(pid) - before[who]) / requests * 1e6, 1)
    used = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    run["wrk_cpu_us_per_req"] = round(used / requests * 1e6, 1)
    run["load_1min"] = round(os.getloadavg()[0], 2)  # what else the machine ran meanwhile
    if "redis" in pids and pids["redis"] in descendants(pids["gateway"]):
        run["gateway_cpu_us_per_req"] = round(run["gateway_cpu_us_per_req"] - run["redis_cpu_us_per_req"], 1)
    return run


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found.update(children)
        todo += children
    return found


def capacity(paths: dict[str, str], pids: dict[str, int], redis: dict[str, int], upstream: int, rounds: int,
             seconds: float, tmp: Path) -> dict:
    runs: dict[str, dict[int, list[dict]]] = {name: {c: [] for c in CONCURRENCY} for name in paths}
    for _ in range(rounds):
        for conns in CONCURRENCY:
            for name, base in paths.items():  # alternating: one, then the other, at each step
                who = {"gateway": pids[name], "worker": upstream}
                if redis.get(name):
                    who["redis"] = redis[name]
                runs[name][conns].append(measured(base, name, conns, seconds, tmp, who))
    out = {}
    for name, by_conns in runs.items():
        table = {}
        for conns, samples in by_conns.items():
            ok = [s for s in samples if s["p99_us"] <= P99_LIMIT_US and not s["errors"]]
            table[conns] = {"rps_median": statistics.median(s["rps"] for s in samples),
                            "p99_us_median": statistics.median(s["p99_us"] for s in samples),
                            **{key: statistics.median(s[key] for s in samples) for key in samples[0]
                               if key.endswith("_cpu_us_per_req")},
                            "best_rps_within": max((s["rps"] for s in ok), default=0.0), "runs": samples}
        medians_within = [row["rps_median"] for row in table.values() if row["p99_us_median"] <= P99_LIMIT_US]
        out[name] = {"best_rps_p99_le_10ms": max((row["best_rps_within"] for row in table.values()), default=0.0),
                     "median_rps_p99_le_10ms": max(medians_within, default=0.0), "by_concurrency": table}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke test of the bench)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default="tests/perf/results/processes-bench.json")
    args = parser.parse_args()
    rounds, seconds = (1, 2.0) if args.quick else (args.rounds, 5.0)
    procs = Procs()
    started = time.time()
    gateways: list[subprocess.Popen] = []
    try:
        start_upstream(procs, streams=False)
        upstream = procs.procs[0].pid  # taskset execs nginx: the same pid
        solo_redis = procs.start(["redis-server", "--port", "0", "--unixsocket", str(procs.tmp / "redis.sock"),
                                  "--save", "", "--appendonly", "no"], None)
        paths, pids, redis = {}, {}, {"processes-1-redis": solo_redis.pid}
        shared = {"BEACON_REDIS_URL": f"unix://{procs.tmp / 'redis.sock'}", "BEACON_REDIS_PREFIX": "solo:"}
        for name, processes, env, affinity in CONFIGS:
            url, proc = start_gateway(procs, name, processes, shared if env == "solo" else None, affinity)
            paths[name], pids[name] = url, proc.pid
            gateways.append(proc)
        redis.update({name: redis_of(pids[name]) for name, processes, _, _ in CONFIGS if processes > 1})
        report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "rounds": rounds,
                  "seconds": seconds,
                  "s1_capacity": capacity(paths, pids, redis, upstream, rounds, seconds, procs.tmp)}
        for suffix in ("", "-no-affinity"):
            one, two = (report["s1_capacity"][f"processes-{n}{suffix}"] for n in (1, 2))
            for key in ("best_rps_p99_le_10ms", "median_rps_p99_le_10ms"):
                report[f"ratio{suffix}_{key}"] = round(two[key] / one[key], 2) if one[key] else None
        loads = [r["load_1min"] for row in report["s1_capacity"].values() for t in row["by_concurrency"].values()
                 for r in t["runs"]]
        report["load_1min"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
        report["wall_s"] = round(time.time() - started, 1)
    finally:
        for proc in gateways:
            stop_gateway(proc)
        procs.stop()
    print_report(report)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json} in {report['wall_s']} s")
    return 0


def print_report(report: dict) -> None:
    print(f"\nS1 capacity, {report['rounds']} rounds of {report['seconds']} s "
          "(median req/s, median p99 us, gateway CPU us per request)")
    print(f"{'concurrency':<12}" + "".join(f"{name:>26}" for name in report["s1_capacity"]))
    for conns in CONCURRENCY:
        rows = [row["by_concurrency"][conns] for row in report["s1_capacity"].values()]
        cells = [f"{row['rps_median']:>9.0f} {row['p99_us_median']:>7} {row['gateway_cpu_us_per_req']:>6}"
                 for row in rows]
        print(f"{conns:<12}" + "".join(f"{cell:>26}" for cell in cells))
    print(f"load average meanwhile (1 min): {report['load_1min']}")
    for key in ("best_rps_p99_le_10ms", "median_rps_p99_le_10ms"):
        values = "  ".join(f"{name} {row[key]:.0f}" for name, row in report["s1_capacity"].items())
        ratios = f"ratio {report[f'ratio_{key}']}, without affinity {report[f'ratio-no-affinity_{key}']}"
        print(f"{key}: {values}  {ratios}")


if __name__ == "__main__":
    sys.exit(main())
