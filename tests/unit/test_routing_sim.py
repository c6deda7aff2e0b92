"""The routing benchmark's fleet model behaves like Ollama workers (so its figures mean something)."""

from tests.perf.routing_bench import MODELS, Ours, RoundRobin, belady_bound, run, trace
from tests.perf.routing_sim import Fleet, Request, Worker


def one_worker(vram_gib: float) -> Fleet:
    return Fleet([Worker("gpu0", "gpu", vram_gib, slots=2)], {"a": 10.0, "b": 10.0}, {"a": 100.0, "b": 100.0},
                 load_fixed_s=1.0, load_gib_per_s=10.0)


def drive(sim: Fleet, items) -> list[Request]:
    requests = [Request(i, t, m, 10) for i, (t, m) in enumerate(items)]
    for req in requests:
        sim.at(req.arrival, "arrive", req)
    while (event := sim.step()) is not None:
        if event[0] == "arrive":
            sim.submit(event[1], "gpu0")
    return requests


def test_a_resident_model_serves_without_another_load():
    sim = one_worker(20.0)
    requests = drive(sim, [(0.0, "a"), (5.0, "a"), (10.0, "a")])
    assert sim.loads == 1 and [r.waited_for_load for r in requests] == [True, False, False]
    assert requests[1].start == 5.0, "a warm request starts at once"


def test_a_worker_with_room_for_one_model_loads_on_every_switch():
    sim = one_worker(12.0)
    requests = drive(sim, [(0.0, "a"), (5.0, "b"), (10.0, "a"), (15.0, "b")])
    assert sim.loads == 4 and all(r.done_at for r in requests)
    assert sim.load_seconds == 4 * 2.0


def test_the_load_bound_is_below_what_routing_policies_achieve():
    items = trace(600, 1.1, 3.0, seed=3)
    bound = belady_bound(items, 4 * 40.0)
    rr, ours = run(RoundRobin(), items, 4, 40.0), run(Ours(), items, 4, 40.0)
    assert bound <= min(rr["loads_per_1000"], ours["loads_per_1000"]) * len(items) / 1000
    assert ours["loads_per_1000"] < rr["loads_per_1000"], "residency routing beats round robin on loads"
    assert set(MODELS) >= {m for _, m, _ in items}
