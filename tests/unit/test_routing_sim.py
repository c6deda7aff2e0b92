"""The routing benchmark's fleet model behaves like Ollama workers, so its figures mean something:
residency, LRU eviction, serial loads, draining, the offline baseline, and ours driving the real router.
Tiny traces in simulated time; no sockets and no sleeping.
"""

import argparse
import random

from tests.perf.routing_bench import Belady, Ours, RoundRobin, run
from tests.perf.routing_sim import Fleet, Future, Request, Worker, trace

SIZES = {"a": (10.0, 100.0), "b": (10.0, 100.0), "c": (10.0, 100.0), "d": (10.0, 100.0)}  # GiB, tokens/s


def fleet(vram_gib: float, slots: int = 2, victim_key=None) -> Fleet:
    return Fleet([Worker("gpu0", "gpu", vram_gib, slots)], SIZES, load_fixed_s=1.0, load_gib_per_s=10.0,
                 victim_key=victim_key)


def replay(sim: Fleet, items, tokens: int = 10, worker: str = "gpu0") -> list[Request]:
    requests = [Request(i, t, m, tokens) for i, (t, m) in enumerate(items)]
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            sim.submit(event[1], worker)
    return requests


def test_a_request_for_a_resident_model_causes_no_load():
    sim = fleet(20.0)
    requests = replay(sim, [(0.0, "a"), (5.0, "a"), (10.0, "a")])
    assert sim.loads == 1 and [r.waited_for_load for r in requests] == [True, False, False]
    assert requests[1].start == 5.0, "a warm request starts at once"
    assert requests[0].start == 2.0, "the first waits 1 s + 10 GiB / 10 GiB/s"


def test_a_worker_with_room_for_one_model_loads_every_time_the_model_changes():
    sim = fleet(12.0)
    requests = replay(sim, [(0.0, "a"), (5.0, "b"), (10.0, "a"), (15.0, "b"), (20.0, "b")])
    assert sim.loads == 4 and sim.load_seconds == 4 * 2.0 and all(r.done_at for r in requests)


def test_a_full_model_makes_the_next_request_wait_in_order():
    sim = fleet(20.0, slots=1)
    first, second = replay(sim, [(0.0, "a"), (2.5, "a")], tokens=300)  # 3 s of decoding each
    assert second.start == first.done_at and not second.waited_for_load


def test_a_load_that_needs_a_busy_model_gone_waits_for_it_and_the_busy_model_comes_back_later():
    sim = fleet(12.0, slots=1)
    a1, b, a2 = replay(sim, [(0.0, "a"), (2.5, "b"), (3.0, "a")], tokens=500)  # a is busy 2.0 -> 7.05
    assert b.ready == a1.done_at + 2.0, "b loads once a's running request is done"
    assert a2.start >= b.done_at + 2.0 and sim.loads == 3, "a request arriving after the drain waits for a reload"


def test_the_cpu_worker_never_loads():
    sim = Fleet([Worker("cpu0", "cpu", 0.0, 2)], SIZES)
    requests = replay(sim, [(float(i), m) for i, m in enumerate("abcd")], worker="cpu0")
    assert sim.loads == 0 and not any(r.waited_for_load for r in requests)
    assert requests[0].decode_s == 10 * 20 / 100.0, "20x slower than a GPU"


def test_belady_never_loads_more_than_lru_on_a_random_trace():
    rng = random.Random(7)
    items = [(10.0 * i, rng.choice("abcd")) for i in range(300)]  # spaced out: nothing is ever busy
    lru = fleet(25.0)
    replay(lru, items)
    future = Future([Request(i, t, m, 10) for i, (t, m) in enumerate(items)])
    belady = fleet(25.0)
    belady.victim_key = lambda model, copy: -future.next_use(model, belady.now)
    replay(belady, items)
    assert belady.loads <= lru.loads and belady.loads < len(items)


def test_every_policy_serves_every_request_and_ours_makes_no_avoidable_load():
    args = argparse.Namespace(gpus=2, vram_gib=48.0, slots=4, max_loaded=0, bandwidth=2.0)
    items = trace(300, 1.1, 1.0, seed=3)
    rows = {p.name: run(p, items, args) for p in (RoundRobin(), Ours(2.0, 2.0), Ours(0.0, 2.0), Belady())}
    assert all(r["requests"] == 300 and r["ttft_p50_s"] >= 0.05 for r in rows.values())
    assert rows["ours (exact state)"]["avoidable_loads"] == 0
    assert rows["ours (exact state)"]["loads"] < rows["round robin"]["loads"]


def test_a_request_that_asks_another_context_reloads_the_copy_once_its_requests_end():
    sim = fleet(20.0, slots=2)
    requests = [Request(0, 0.0, "a", 300), Request(1, 2.5, "a", 10, num_ctx=8192), Request(2, 3.0, "a", 10)]
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            sim.submit(event[1], "gpu0")
    first, other, back = requests
    assert sim.loads == 3, "loaded, reloaded for 8192, reloaded for the default again: Ollama's needsReload"
    assert other.ready == first.done_at + 2.0 and back.start >= other.done_at + 2.0
    assert other.triggered_load and other.waited_for_load


def test_ours_gives_each_num_ctx_its_own_copy_where_options_blind_routing_reloads():
    from tests.perf.routing_sim import with_contexts

    args = argparse.Namespace(gpus=2, vram_gib=48.0, slots=4, max_loaded=0, bandwidth=2.0)
    items = with_contexts([(5.0 * i, "llama3.2:1b", 20) for i in range(200)], {None: 0.5, 8192: 0.5}, seed=1)
    blind = run(Ours(0.0, 2.0, options=False), items, args)
    aware = run(Ours(0.0, 2.0), items, args)
    assert aware["loads"] == 2 and aware["loads_by_reason"] == {"fits": 1, "options": 1}, \
        "one copy per context, each on its own worker"
    assert blind["loads"] > 50, "clients that alternate reload the one copy"
