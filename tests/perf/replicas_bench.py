"""Replicas benchmark (not a test): 1, 2, 3 and 4 gateway replicas in front of the same simulated fleet.

Each replica is the real router (gateway.router.choose) with its own InFlight, its own snapshots
(probed every probe_s at its own phase), its own admission queues and learned slots, exactly what
a second `beacon-gateway` process behind a Kubernetes Service keeps to itself. Requests are spread
over the replicas at random (a Service without session affinity). The fleet model, the trace and
the per-replica request path are those of tests/perf/routing_bench.py and routing_sim.py, unchanged.
Prints a table, writes JSON.

    python -m tests.perf.replicas_bench [--requests 8000] [--replicas 1,2,3,4] [--zipf 1.1] [--seed 1]
                                        [--json tests/perf/results/replicas-bench.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter, defaultdict, deque
from pathlib import Path

from gateway import state
from gateway.config import parse_config
from gateway.inflight import InFlight
from gateway.router import Need
from tests.perf.routing_bench import (GIB, PROMPT_TOKENS, ModelEntry, Ours, build_fleet, config_toml, fleet_arguments,
                                      summarise)
from tests.perf.routing_sim import MODELS, Fleet, Request, mean_service_s, trace


class Group:
    """What the replicas share: nothing but the fleet and the end of the trace."""

    def __init__(self, count: int, probe_s: float, bandwidth: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.replicas = [Replica(self, i, probe_s, bandwidth) for i in range(count)]
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
        self.need = Need(PROMPT_TOKENS, self.config.failover.default_num_predict)
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


def run(count: int, items: list[tuple[float, str, int]], args) -> dict:
    sim = build_fleet(args)
    requests = [Request(i, t, m, n) for i, (t, m, n) in enumerate(items)]
    group = Group(count, args.probe_s, args.bandwidth, args.seed + 1000 * count)
    group.attach(sim, requests)
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            group.route(event[1])
        elif event[0] == "tick":
            event[1].tick()
    row = summarise(f"{count} replica{'s' if count > 1 else ''}", sim, requests)
    reasons: Counter = Counter()
    for replica in group.replicas:
        reasons.update(replica.load_reasons)
    row.update(replicas=count, loads_by_reason=dict(reasons),
               would_be_503=sum(len(r.refused) for r in group.replicas),
               worker_queued_share=round(sum(r.start - r.ready > 0.01 for r in requests) / len(requests), 4))
    return row


def print_table(s: float, rows: list[dict], rate: float) -> None:
    print(f"\nZipf s = {s:g}  ({rows[0]['requests']} requests, {rate:.2f}/s)")
    print(f"{'replicas':>8} {'loads/1k':>9} {'resident':>9} {'TTFT p50':>9} {'TTFT p99':>9} {'GPU-s load':>11} "
          f"{'avoidable':>9} {'queued@worker':>14} {'503*':>6}")
    for r in rows:
        print(f"{r['replicas']:8d} {r['loads_per_1000']:9.2f} {100 * r['resident_share']:8.1f}% "
              f"{r['ttft_p50_s']:8.2f}s {r['ttft_p99_s']:8.2f}s {r['gpu_seconds_loading']:11.0f} "
              f"{r['avoidable_loads']:9d} {100 * r['worker_queued_share']:13.1f}% {r['would_be_503']:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--requests", type=int, default=8000)
    add("--replicas", default="1,2,3,4")
    add("--seed", type=int, default=1)
    add("--zipf", default="1.1")
    fleet_arguments(add)
    add("--probe-s", type=float, default=2.0, help="each replica's probe interval")
    add("--json", default="tests/perf/results/replicas-bench.json")
    args = parser.parse_args()
    rate = args.utilisation * args.gpus * args.slots / mean_service_s(MODELS)
    started, rows = time.perf_counter(), []
    for s in (float(x) for x in args.zipf.split(",")):
        items = trace(args.requests, s, rate, args.seed, args.shift_s, args.burst_every_s)
        block = [run(int(n), items, args) for n in args.replicas.split(",")]
        for row in block:
            row["zipf_s"] = s
        print_table(s, block, rate)
        rows += block
    report = {"settings": {**vars(args), "arrivals_per_s": round(rate, 3), "models": MODELS},
              "results": rows, "wall_s": round(time.perf_counter() - started, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}; {report['wall_s']} s")


if __name__ == "__main__":
    main()
