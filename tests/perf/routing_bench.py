"""Routing-quality benchmark (not a test): replay one trace through round robin, least
outstanding requests, our router (gateway.router.choose, the real code) and an offline
optimum for loads (Belady: evict the model used furthest in the future).

    python -m tests.perf.routing_bench [--requests 20000] [--zipf 0.9,1.1,1.3] [--json out/routing-bench.json]

Prints a table and writes JSON. The fleet model lives in routing_sim.py and is the same for
every policy. Simulated time only: the run takes a minute or two of CPU, not of waiting.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import statistics
import time
from collections import defaultdict, deque
from contextlib import ExitStack
from pathlib import Path

from backends.base import ModelEntry, Probe, ResidentModel
from gateway import state
from gateway.config import parse_config
from gateway.inflight import InFlight
from gateway.router import Need, choose
from tests.perf.routing_sim import Fleet, Request, Worker

GIB = 1024**3
MODELS = {"m1b": 1.3, "m3b": 2.0, "m7b": 4.1, "m8b": 4.9, "m13b": 7.4, "m14b": 9.0, "m22b": 12.5,
          "m27b": 16.0, "m32b": 19.0, "m34b": 20.0, "m70b": 40.0, "m72b": 40.0}  # 176 GiB in all
RATES = {m: 520.0 / size ** 0.7 for m, size in MODELS.items()}  # ~430 tok/s at 1B, ~40 at 70B on a GPU


def trace(n: int, s: float, rate: float, seed: int, shift_s: float = 300.0, burst_every_s: float = 240.0):
    """Poisson arrivals, Zipf(s) popularity re-ranked every shift_s, bursts to a cold model."""
    rng = random.Random(seed)
    names = list(MODELS)
    weights = [1 / (k + 1) ** s for k in range(len(names))]
    out, t, ranking, next_shift, next_burst = [], 0.0, names[:], shift_s, burst_every_s
    while len(out) < n:
        t += rng.expovariate(rate)
        if t >= next_shift:
            rng.shuffle(ranking)
            next_shift += shift_s
        if t >= next_burst:
            out += [(t + i * 0.1, ranking[-1]) for i in range(30)]  # the least popular model, suddenly hot
            next_burst += burst_every_s
        out.append((t, rng.choices(ranking, weights)[0]))
    out.sort()
    return [(t, m, rng.randint(100, 200)) for t, m in out[:n]]


def fleet(gpus: int, vram_gib: float, victim_order=None) -> Fleet:
    workers = [Worker(f"gpu{i}", "gpu", vram_gib, slots=4) for i in range(gpus)]
    workers.append(Worker("cpu0", "cpu", 0.0, slots=2, rate_scale=1 / 20))
    return Fleet(workers, MODELS, RATES, load_fixed_s=1.0, load_gib_per_s=2.0, victim_order=victim_order)


class Policy:
    name = "policy"

    def attach(self, sim: Fleet, requests: list[Request]) -> None:
        self.sim = sim

    def route(self, req: Request) -> None:
        raise NotImplementedError


class RoundRobin(Policy):
    name = "round robin"

    def attach(self, sim, requests):
        super().attach(sim, requests)
        self.cycle = itertools.cycle([w for w in sim.workers if w.startswith("gpu")])

    def route(self, req):
        self.sim.submit(req, next(self.cycle))


class LeastOutstanding(Policy):
    name = "least outstanding"

    def route(self, req):
        gpus = [w for w in self.sim.workers.values() if w.tier == "gpu"]
        self.sim.submit(req, min(gpus, key=lambda w: w.outstanding()).name)


class Belady(Policy):
    """Offline routing by the future: resident copies first; load where the evicted models are
    needed furthest ahead, and workers evict that way too (Belady)."""

    name = "offline optimum (Belady)"

    def attach(self, sim, requests):
        super().attach(sim, requests)
        self.uses = defaultdict(list)
        for r in requests:
            self.uses[r.model].append(r.arrival)
        sim.victim_order = self.victims

    def next_use(self, model: str, now: float) -> float:
        times = self.uses[model]
        i = bisect.bisect_right(times, now)
        return times[i] if i < len(times) else float("inf")

    def victims(self, worker, idle, now):
        return sorted(idle, key=lambda t: -self.next_use(t[0], now))

    def route(self, req):
        gpus = [w for w in self.sim.workers.values() if w.tier == "gpu"]
        holders = [w for w in gpus if req.model in w.resident or w.loading == req.model]
        if holders:
            self.sim.submit(req, min(holders, key=lambda w: w.outstanding()).name)
            return
        self.sim.submit(req, min(gpus, key=lambda w: self.cost(w, req.model)).name)

    def cost(self, w, model: str) -> tuple:
        """Load where it evicts nothing, else where what it evicts is needed furthest ahead."""
        need, now = MODELS[model] - (w.vram_gib - w.used()), self.sim.now
        if need <= 0:
            return (0, 0.0, w.outstanding())
        idle = sorted(((m, c) for m, c in w.resident.items() if c.active == 0),
                      key=lambda t: -self.next_use(t[0], now))
        soonest, freed = float("inf"), 0.0
        for m, c in idle:
            if freed >= need:
                break
            freed += c.size
            soonest = min(soonest, self.next_use(m, now))
        return (1 if freed >= need else 2, -soonest, w.outstanding())


class Ours(Policy):
    """The gateway's real router over snapshots probed every probe_s, with its live traffic view."""

    name = "beacon-gateway"

    def __init__(self, probe_s: float = 2.0) -> None:
        self.probe_s = probe_s

    def attach(self, sim, requests):
        super().attach(sim, requests)
        text = "".join(f'[[workers]]\nname = "{w.name}"\nurl = "http://{w.name}"\nkind = "ollama"\ntier = "{w.tier}"\n'
                       + (f"vram_gib = {w.vram_gib}\n" if w.tier == "gpu" else "") for w in sim.workers.values())
        self.config = parse_config((text + "[routing]\nload_fixed_s = 1\nload_gib_per_s = 2\n").encode())
        self.load = InFlight(clock=lambda: sim.now)
        self.snap, self.next_probe = None, 0.0
        self.queues: dict[str, deque] = defaultdict(deque)
        self.stacks: dict[int, ExitStack] = {}
        sim.on_start, sim.on_done = self.started, self.finished

    def probe(self) -> None:
        snap = state.initial(self.config, wall_now=0.0, now=self.sim.now) if self.snap is None else self.snap
        for w in self.sim.workers.values():
            models = tuple(ModelEntry(m, int(s * GIB)) for m, s in MODELS.items())
            resident = tuple(ResidentModel(m, int(c.size * GIB), int(c.size * GIB)) for m, c in w.resident.items()
                             if m != "*") if w.tier == "gpu" else tuple(ResidentModel(m, 0, 0) for m in MODELS)
            snap = state.with_probe(snap, w.name, Probe(ok=True, models=models, resident=resident), self.sim.now)
        self.snap, self.next_probe = snap, self.sim.now + self.probe_s

    def route(self, req):
        if self.sim.now >= self.next_probe:
            self.probe()
        self.load.requested(f"{req.model}:latest", self.sim.now)
        if self.queues[req.model] or not self.dispatch(req):
            self.queues[req.model].append(req)

    def dispatch(self, req) -> bool:
        name = f"{req.model}:latest"  # the gateway works with canonical Ollama names
        plan = choose(self.snap, self.load, name, None, len(self.queues[req.model]),
                      Need(prompt_tokens=100, predict_tokens=req.tokens))
        if not plan.candidates:
            return False
        stack = ExitStack()
        req.claim = stack.enter_context(self.load.claim(plan.candidates[0].worker, name, self.sim.now))
        self.stacks[req.rid] = stack
        self.sim.submit(req, plan.candidates[0].worker)
        return True

    def started(self, req):
        req.claim.first_byte()

    def finished(self, req):
        self.stacks.pop(req.rid).close()
        self.load.finished(f"{req.model}:latest", req.done_at - req.start, None)
        queue = self.queues[req.model]
        while queue and self.dispatch(queue[0]):
            queue.popleft()


def belady_bound(items, capacity_gib: float) -> int:
    """Loads of a single fleet-wide cache of the fleet's total VRAM, evicting the model used
    furthest in the future: no placement, slot or timing constraint, so no policy can do much better."""
    uses = defaultdict(deque)
    for i, (_, model, _) in enumerate(items):
        uses[model].append(i)
    cache, loads = set(), 0
    for _, model, _ in items:
        uses[model].popleft()
        if model in cache:
            continue
        loads += 1
        while sum(MODELS[m] for m in cache) + MODELS[model] > capacity_gib:
            cache.remove(max(cache, key=lambda m: uses[m][0] if uses[m] else float("inf")))
        cache.add(model)
    return loads


def run(policy: Policy, items, gpus: int, vram_gib: float) -> dict:
    sim = fleet(gpus, vram_gib)
    requests = [Request(i, t, m, n) for i, (t, m, n) in enumerate(items)]
    policy.attach(sim, requests)
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            policy.route(event[1])
    return summarise(policy.name, sim, requests)


def summarise(name: str, sim: Fleet, requests: list[Request]) -> dict:
    ttft = sorted(r.start + 0.05 - r.arrival for r in requests)
    pct = lambda q: ttft[min(len(ttft) - 1, int(q * len(ttft)))]  # noqa: E731
    return {"policy": name, "requests": len(requests), "loads_per_1000": round(1000 * sim.loads / len(requests), 2),
            "resident_share": round(sum(not r.waited_for_load for r in requests) / len(requests), 4),
            "ttft_p50_s": round(pct(0.5), 3), "ttft_p99_s": round(pct(0.99), 3),
            "mean_ttft_s": round(statistics.fmean(ttft), 3), "gpu_seconds_loading": round(sim.load_seconds, 1),
            "cpu_share": round(sum(r.worker == "cpu0" for r in requests) / len(requests), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=3.0, help="arrivals per second")
    parser.add_argument("--zipf", default="0.9,1.1,1.3")
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--vram-gib", type=float, default=40.0, help="per GPU; 4 x 40 GiB cannot hold all 176 GiB")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="out/routing-bench.json")
    args = parser.parse_args()
    results, started = [], time.perf_counter()
    for s in (float(x) for x in args.zipf.split(",")):
        items = trace(args.requests, s, args.rate, args.seed)
        rows = [run(p, items, args.gpus, args.vram_gib) for p in (RoundRobin(), LeastOutstanding(), Ours(), Belady())]
        bound = belady_bound(items, args.gpus * args.vram_gib)
        rows.append({"policy": "loads lower bound (Belady)", "requests": len(items),
                     "loads_per_1000": round(1000 * bound / len(items), 2)})
        for row in rows:
            row["zipf_s"] = s
        results += rows
        print_table(s, rows)
    report = {"settings": vars(args), "results": results, "goals": goals(results),
              "wall_s": round(time.perf_counter() - started, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["goals"], indent=2), f"\nwrote {args.json} in {report['wall_s']} s")


def goals(results: list[dict]) -> dict:
    out = {}
    for s in sorted({r["zipf_s"] for r in results}):
        row = {r["policy"]: r for r in results if r["zipf_s"] == s}
        ours, best, rr = row["beacon-gateway"], row["loads lower bound (Belady)"], row["round robin"]
        out[f"s={s}"] = {"loads_vs_bound": round(ours["loads_per_1000"] / max(best["loads_per_1000"], 1e-9), 2),
                         "loads_vs_belady_routing": round(ours["loads_per_1000"] / max(
                             row["offline optimum (Belady)"]["loads_per_1000"], 1e-9), 2),
                         "p99_ttft_rr_over_ours": round(rr["ttft_p99_s"] / max(ours["ttft_p99_s"], 1e-9), 1)}
    return out


def print_table(s: float, rows: list[dict]) -> None:
    print(f"\nZipf s = {s}")
    print(f"{'policy':28} {'loads/1k':>9} {'resident':>9} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'GPU-s load':>11} {'CPU':>6}")
    for r in rows:
        if "ttft_p50_s" not in r:
            print(f"{r['policy']:28} {r['loads_per_1000']:9.1f}")
            continue
        print(f"{r['policy']:28} {r['loads_per_1000']:9.1f} {100 * r['resident_share']:8.1f}% {r['ttft_p50_s']:8.2f}s "
              f"{r['ttft_p99_s']:8.2f}s {r['gpu_seconds_loading']:11.0f} {100 * r['cpu_share']:5.1f}%")


if __name__ == "__main__":
    main()
