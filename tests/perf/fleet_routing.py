"""The routing half of the fleet-scale benchmark: the real `router.choose` on snapshots of N
workers built by the real updaters, with a live traffic view as a busy gateway has one.

Pure and in-process: no sockets, no gateway process. Layout (the same at every N): a catalogue
of M models; each worker holds a window of 18 of the first M - 5 on disk (the window starts one
model further on per worker) with the first two of its window resident; the last 5 models are on
disk on 40% of the workers (20 models on those) and loaded nowhere ("cold").
A probe round (every worker re-probed, nothing changed) lands every `swap_every` decisions,
as one does every 2 s at 100 requests/s.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack

from backends.base import ModelEntry, Probe, ResidentModel
from gateway import state
from gateway.config import parse_config
from gateway.inflight import InFlight
from gateway.router import Need, choose
from tests.perf.procs import pct

GIB = 1024**3
DISK_PER_WORKER = 20
COLD_MODELS = 5


def catalogue(models: int) -> list[tuple[str, int]]:
    """(name, bytes): 1 to 6 GiB, a 24 GiB GPU holds two with room for a third."""
    return [(f"m{j}:7b", int((1 + j % 6) * GIB)) for j in range(models)]


def layout(n: int, models: int) -> dict[str, tuple[list[int], list[int]]]:
    """worker -> (model indices on disk, model indices resident)."""
    served = models - COLD_MODELS
    out = {}
    for i in range(n):
        disk = [(i + j) % served for j in range(min(DISK_PER_WORKER - 2, served))]
        cold = list(range(served, models)) if i % 5 < 2 else []
        out[f"w{i}"] = disk + cold, disk[:2]
    return out


def config_text(names: list[str]) -> str:
    return "".join(f'[[workers]]\nname = "{w}"\nurl = "http://{w}:11434"\nkind = "ollama"\ntier = "gpu"\n'
                   "vram_gib = 24\n" for w in names)


def probes(n: int, models: int) -> dict[str, Probe]:
    cat = catalogue(models)
    out = {}
    for name, (disk, resident) in layout(n, models).items():
        entries = tuple(ModelEntry(cat[m][0], cat[m][1], {"name": cat[m][0], "size": cat[m][1]}) for m in disk)
        loaded = tuple(ResidentModel(cat[m][0], cat[m][1], cat[m][1], None, None, {"name": cat[m][0]})
                       for m in resident)
        out[name] = Probe(ok=True, version="0.12.6", models=entries, resident=loaded)
    return out


def probe_round(snap, results: dict[str, Probe], now: float):
    """One probe round through the updaters the code under test has (one swap, or one per worker)."""
    batch = getattr(state, "with_probes", None)
    if batch is not None:
        return batch(snap, results, now)
    for name, probe in results.items():
        snap = state.with_probe(snap, name, probe, now)
    return snap


def live_traffic(n: int, models: int, rng: random.Random, now: float, stack: ExitStack) -> InFlight:
    """History on every resident copy (last use, a decode rate), 10% of workers with a request in
    flight since the last probe, 2,000 remembered conversations."""
    cat = catalogue(models)
    load = InFlight(clock=lambda: now)
    history = sorted((now - rng.uniform(5, 300), name, cat[m][0]) for name, (_, resident) in layout(n, models).items()
                     for m in resident)
    for at, name, model in history:  # in time order, as a monotonic clock has it
        with load.claim(name, model, at):
            pass
        load.record_rate(name, model, rng.uniform(80, 120), 5.0, 15.0)
    for name, (_, resident) in layout(n, models).items():
        if resident and rng.random() < 0.1:
            stack.enter_context(load.claim(name, cat[resident[0]][0], now + 0.5))
    for k in range(2000):
        load.remember_session(f"s{k}", f"w{rng.randrange(n)}")
    for model, _ in cat:
        load.finished(model, rng.uniform(0.5, 3.0), None)
    return load


def measure(n: int, models: int, seconds: float, swap_every: int = 200, seed: int = 1) -> dict:
    """Median and p99 of one decision, in microseconds, for a model with loaded copies ("warm")
    and for a model loaded nowhere ("cold"), each within `seconds` of wall time."""
    rng = random.Random(seed)
    names = [f"w{i}" for i in range(n)]
    cfg = parse_config(config_text(names).encode())
    now = 1000.0
    results = probes(n, models)
    snap = probe_round(state.initial(cfg, wall_now=0.0, now=now), results, now)
    cat = catalogue(models)
    resident = sorted({cat[m][0] for _, r in layout(n, models).values() for m in r})
    cold = [name for name, _ in cat[models - COLD_MODELS:]]
    need = Need(100, 128)
    out = {}
    with ExitStack() as stack:
        load = live_traffic(n, models, rng, now + 1.0, stack)
        for case, pool in (("warm", resident), ("cold", cold)):
            timings, reasons, decisions = [], {}, 0
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline and decisions < 20000:
                if decisions and decisions % swap_every == 0:
                    now += 2.0
                    snap = probe_round(snap, results, now)
                model = rng.choice(pool)
                session = f"s{rng.randrange(4000)}" if rng.random() < 0.5 else None
                started = time.perf_counter_ns()
                plan = choose(snap, load, model, session, 0, need)
                timings.append((time.perf_counter_ns() - started) / 1000)
                reasons[plan.reason] = reasons.get(plan.reason, 0) + 1
                decisions += 1
            out[case] = {"decisions": decisions, "median_us": round(pct(timings, 0.5), 1),
                         "p99_us": round(pct(timings, 0.99), 1), "max_us": round(max(timings), 1),
                         "capped": decisions < 20000, "reasons": reasons}
    out["copies_per_warm_model"] = round(sum(len(r) for _, r in layout(n, models).values()) / max(1, len(resident)), 1)
    out["holders_per_cold_model"] = round(sum(len(d) for d, _ in layout(n, models).values()) / models, 1)
    return out
