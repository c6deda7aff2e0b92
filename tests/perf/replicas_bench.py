"""Replicas benchmark (not a test): 1, 2 and 4 gateway replicas in front of the same simulated
fleet, sharing nothing and sharing live state through a real Redis, side by side in one run.

Each replica is the real router (gateway.router.choose) with its own InFlight, its own snapshots
(probed every probe_s at its own phase), its own admission queues and learned slots. Without
sharing that is all it has, exactly what a second `beacon-gateway` process behind a Kubernetes
Service keeps to itself. With sharing (tests/perf/replicas_shared.py) it is a replica with
BEACON_REDIS_URL: it routes by gateway.shared_load.SharedLoad over gateway.cluster.Cluster, synced
every --sync-s of simulated time through a private redis-server, and takes the fleet-wide lock
before a cold load. Requests are spread over the replicas at random (a Service without session
affinity), the same replica for the same request in both modes. The fleet model, the trace and the
per-replica request path are those of tests/perf/routing_bench.py and routing_sim.py, unchanged.
Prints a table, writes JSON.

    python -m tests.perf.replicas_bench [--requests 4000] [--replicas 1,2,4] [--sharing none,redis]
                                        [--zipf 1.1] [--seed 1] [--sync-s 0.1]
                                        [--json tests/perf/results/replicas-bench.json]

The figures without sharing from before the shared mode existed come back unchanged with
`--sharing none --requests 20000 --replicas 1,2,3,4 --zipf 0.9,1.1,1.3`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

from gateway import state
from gateway.config import parse_config
from gateway.inflight import InFlight
from gateway.router import Need
from tests.perf.replicas_shared import Bridge, PrivateRedis, Shared, Sharing
from tests.perf.routing_bench import (
    GIB,
    PROMPT_TOKENS,
    ModelEntry,
    Ours,
    build_fleet,
    config_toml,
    fleet_arguments,
    summarise,
)
from tests.perf.routing_sim import MODELS, Fleet, Request, mean_service_s, trace


class Group:
    """What the replicas share: the fleet and the end of the trace; with `sharing`, a Redis as well."""

    def __init__(self, count: int, probe_s: float, bandwidth: float, seed: int, sharing=None) -> None:
        self.rng = random.Random(seed)
        if sharing is None:
            self.replicas = [Replica(self, i, probe_s, bandwidth) for i in range(count)]
        else:
            self.replicas = [SharedReplica(self, i, probe_s, bandwidth, sharing) for i in range(count)]
        self.owner: dict[int, Replica] = {}
        self.remaining = 0

    def attach(self, sim: Fleet, requests: list[Request]) -> None:
        self.remaining = len(requests)
        sim.on_start = lambda req: self.owner[req.rid].started(req)
        sim.on_done = lambda req: self.owner[req.rid].finished(req)
        for replica in self.replicas:
            replica.attach(sim, requests)

    def route(self, req: Request) -> None:
        replica = self.owner[req.rid] = self.rng.choice(self.replicas)
        replica.route(req)


class Replica(Ours):
    """Ours, one process of several: probes at its own phase, counts only its own requests in flight."""

    def __init__(self, group: Group, index: int, probe_s: float, bandwidth: float) -> None:
        super().__init__(probe_s, bandwidth)
        self.group, self.index = group, index

    @property
    def remaining(self) -> int:  # Ours decrements it when a request ends; the trace's end is shared
        return self.group.remaining

    @remaining.setter
    def remaining(self, value: int) -> None:
        self.group.remaining = value

    def attach(self, sim: Fleet, requests: list[Request]) -> None:
        self.sim = sim
        self.config = parse_config(config_toml(sim, self.bandwidth).encode())
        self.need = Need(PROMPT_TOKENS, self.config.routing.default_num_predict)
        self.load = InFlight(clock=lambda: sim.now)
        self.snap = state.initial(self.config, wall_now=0.0, now=0.0)
        self.queues: dict[str, deque] = defaultdict(deque)
        self.claims: dict[int, tuple] = {}
        self.load_reasons: Counter = Counter()
        self.refused: set[int] = set()
        self.disk = tuple(ModelEntry(m, int(size * GIB), {"name": m}) for m, (size, _) in MODELS.items())
        self.probe()
        # Replicas start at different moments, so their probes land at different phases.
        self.sim.at(self.group.rng.uniform(0, self.probe_s), "tick", self)

    def tick(self) -> None:
        self.probe()
        for model in list(self.queues):
            self.drain(model)
        if self.remaining:
            self.sim.at(self.sim.now + self.probe_s, "tick", self)


class SharedReplica(Shared, Replica):
    """A Replica with BEACON_REDIS_URL: tests/perf/replicas_shared.py."""


def run(count: int, items: list[tuple[float, str, int]], args, sharing=None) -> dict:
    sim = build_fleet(args)
    requests = [Request(i, t, m, n) for i, (t, m, n) in enumerate(items)]
    group = Group(count, args.probe_s, args.bandwidth, args.seed + 1000 * count, sharing)
    started = time.perf_counter()
    group.attach(sim, requests)
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            group.route(event[1])
        elif event[0] in ("tick", "sync"):
            getattr(event[1], event[0])()
    row = summarise(f"{count} replica{'s' if count > 1 else ''}", sim, requests)
    reasons: Counter = Counter()
    for replica in group.replicas:
        reasons.update(replica.load_reasons)
    row.update(replicas=count, sharing="redis" if sharing else "none", loads_by_reason=dict(reasons),
               would_be_503=sum(len(r.refused) for r in group.replicas),
               worker_queued_share=round(sum(r.start - r.ready > 0.01 for r in requests) / len(requests), 4))
    if sharing is not None:
        for replica in group.replicas:
            replica.close()
        row.update(shared_load_redirects=sum(sharing.redirected.values()), redirected_from=dict(sharing.redirected),
                   redis_calls=sharing.bridge.calls, wall_s=round(time.perf_counter() - started, 1))
    return row


def goals(rows: list[dict]) -> dict:
    """The issue's goal, per Zipf s: 4 replicas sharing through Redis make at most 1.2x the cold loads
    of one replica, with a p99 TTFT no worse than its; against the lone gateway (no Redis) and
    against one replica with Redis (whose cold-load lock also holds back its own replica loads)."""
    out = {}
    for s in sorted({r["zipf_s"] for r in rows}):
        by = {(r["sharing"], r["replicas"]): r for r in rows if r["zipf_s"] == s}
        four = by.get(("redis", 4))
        if four is None:
            continue
        out[f"s={s:g}"] = {}
        for name, mode in (("vs_lone_gateway", "none"), ("vs_one_replica_with_redis", "redis")):
            one = by.get((mode, 1))
            if one is None:
                continue
            ratio = four["loads"] / max(1, one["loads"])
            out[f"s={s:g}"][name] = {"loads_4_over_1": round(ratio, 2), "loads_goal_met": ratio <= 1.2,
                                     "p99_1_s": one["ttft_p99_s"], "p99_4_s": four["ttft_p99_s"],
                                     "p99_goal_met": four["ttft_p99_s"] <= one["ttft_p99_s"]}
    return out


def print_table(s: float, rows: list[dict], rate: float) -> None:
    print(f"\nZipf s = {s:g}  ({rows[0]['requests']} requests, {rate:.2f}/s)")
    print(f"{'sharing':>22} {'replicas':>8} {'loads/1k':>9} {'resident':>9} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'GPU-s load':>11} {'avoidable':>9} {'queued@worker':>14} {'503*':>6} {'shared-load':>12}")
    for r in sorted(rows, key=lambda r: (r["sharing"] != "none", r["replicas"])):
        label = "no sharing" if r["sharing"] == "none" else "shared through Redis"
        print(f"{label:>22} {r['replicas']:8d} {r['loads_per_1000']:9.2f} {100 * r['resident_share']:8.1f}% "
              f"{r['ttft_p50_s']:8.2f}s {r['ttft_p99_s']:8.2f}s {r['gpu_seconds_loading']:11.0f} "
              f"{r['avoidable_loads']:9d} {100 * r['worker_queued_share']:13.1f}% {r['would_be_503']:>6} "
              f"{r.get('shared_load_redirects', '-'):>12}")


def blocks(args, rate: float, sharing_for) -> list[dict]:
    """Every Zipf s, replica count and mode of the run; a shared run gets its own key prefix."""
    rows = []
    for s in (float(x) for x in args.zipf.split(",")):
        items = trace(args.requests, s, rate, args.seed, args.shift_s, args.burst_every_s)
        block = []
        for n in (int(x) for x in args.replicas.split(",")):
            for mode in args.sharing.split(","):
                block.append(run(n, items, args, sharing_for(f"{s:g}:{n}") if mode == "redis" else None))
        for row in block:
            row["zipf_s"] = s
        print_table(s, block, rate)
        rows += block
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=4000)
    add("--replicas", default="1,2,4")
    add("--sharing", default="none,redis", help="none (each replica alone), redis (a private redis-server), or both")
    add("--seed", type=int, default=1)
    add("--zipf", default="1.1")
    fleet_arguments(add)
    add("--probe-s", type=float, default=2.0, help="each replica's probe interval")
    add("--sync-s", type=float, default=0.1, help="shared mode: each replica's cluster sync (BEACON_REDIS_SYNC_S)")
    add("--json", default="tests/perf/results/replicas-bench.json")
    args = parser.parse_args()
    if not set(args.sharing.split(",")) <= {"none", "redis"}:
        parser.error("--sharing takes none, redis or none,redis")
    rate = args.utilisation * args.gpus * args.slots / mean_service_s(MODELS)
    started, redis, bridge = time.perf_counter(), None, None
    try:
        if "redis" in args.sharing:
            redis, bridge = PrivateRedis(), Bridge()
            runs = f"bench{os.getpid()}"

            def sharing_for(name: str):
                return Sharing(redis, bridge, f"{runs}:{name}:", args.sync_s, random.Random(args.seed))
        else:
            sharing_for = None
        rows = blocks(args, rate, sharing_for)
        through = None
        if redis is not None:
            through = {"redis_server": redis.version, "address": "private unix socket",
                       "commands_processed": redis.commands(bridge)}
            print(f"\nshared rows: through a real redis-server {redis.version} (private, unix socket), "
                  f"{through['commands_processed']:,} commands processed")
    finally:
        if redis is not None:
            redis.stop()
            bridge.close()
    report = {"settings": {**vars(args), "arrivals_per_s": round(rate, 3), "models": MODELS}, "redis": through,
              "results": rows, "goals": goals(rows), "wall_s": round(time.perf_counter() - started, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    if report["goals"]:
        print("goals:", json.dumps(report["goals"], indent=1))
    print(f"\nwrote {args.json}; {report['wall_s']} s")


if __name__ == "__main__":
    main()
