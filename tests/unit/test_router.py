from backends.base import Probe
from gateway import state
from gateway.router import ALL_FULL, UNKNOWN_MODEL, choose
from tests.unit.fleet import config, probe, snapshot

M = "llama3:latest"


def names(plan):
    return [(c.worker, c.reason) for c in plan.candidates]


def test_resident_gpu_first_then_gpu_on_disk_then_cpu():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"cpu0": probe(disk=[M], resident=[M]), "gpu0": probe(disk=[M]),
                          "gpu1": probe(disk=[M], resident=[M])})
    assert names(choose(snap, {}, M)) == [("gpu1", "resident"), ("gpu0", "on-disk"), ("cpu0", "cpu-resident")]


def test_fewest_in_flight_first_among_resident_copies():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M], resident=[M])})
    assert names(choose(snap, {"gpu0": 3, "gpu1": 1}, M))[0] == ("gpu1", "resident")
    assert names(choose(snap, {"gpu0": 0, "gpu1": 1}, M))[0] == ("gpu0", "resident")


def test_a_full_worker_is_skipped_and_all_full_is_its_own_verdict():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), max_inflight={"gpu0": 2, "gpu1": 2})
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M])})
    assert names(choose(snap, {"gpu0": 2}, M)) == [("gpu1", "on-disk")]
    plan = choose(snap, {"gpu0": 2, "gpu1": 2}, M)
    assert plan.verdict == ALL_FULL and plan.candidates == ()


def test_a_model_no_worker_lists_is_unknown():
    cfg = config(("gpu0", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M])})
    assert choose(snap, {}, "nope:latest").verdict == UNKNOWN_MODEL


def test_down_workers_that_held_the_model_are_tried_last_in_panic():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M]), "cpu0": probe(disk=[M])})
    for _ in range(cfg.health.unhealthy_threshold):
        snap = state.with_probe(snap, "gpu0", Probe(ok=False, error="refused"), 101.0)
    assert not snap.worker("gpu0").up
    assert names(choose(snap, {}, M)) == [("gpu1", "on-disk"), ("cpu0", "cpu-on-disk"), ("gpu0", "panic")]


def test_before_any_worker_answered_every_worker_is_tried_blind():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"))
    snap = snapshot(cfg, {})
    assert names(choose(snap, {}, M)) == [("gpu0", "panic"), ("cpu0", "panic")]
