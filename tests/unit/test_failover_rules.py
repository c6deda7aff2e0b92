"""Passive health, retry budget, degraded GPU workers and CPU-tier admission, as pure rules."""

from backends.base import ModelEntry, Probe, ResidentModel
from gateway import state
from gateway.gpu import GpuReading, GpuStatus
from gateway.inflight import InFlight, RetryBudget
from gateway.router import CPU_REFUSED, Need, choose
from tests.unit.fleet import GIB, config, probe, snapshot

M = "llama3:latest"


def names(plan):
    return [(c.worker, c.reason) for c in plan.candidates]


def test_consecutive_failures_eject_and_a_success_resets_the_count():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), extra="[outlier]\nconsecutive_failures = 3\neject_s = 10\n")
    snap = snapshot(cfg, {"gpu0": probe(disk=[M]), "gpu1": probe(disk=[M])})
    snap = state.with_outcome(snap, "gpu0", False, 1.0)
    snap = state.with_outcome(snap, "gpu0", False, 2.0)
    snap = state.with_outcome(snap, "gpu0", True, 3.0)
    assert snap.worker("gpu0").consecutive_failures == 0 and snap.worker("gpu0").serving
    unchanged = state.with_outcome(snap, "gpu0", True, 3.5)
    assert unchanged is snap, "a success with nothing to reset must not churn the snapshot"
    for t in (4.0, 5.0, 6.0):
        snap = state.with_outcome(snap, "gpu0", False, t)
    w = snap.worker("gpu0")
    assert not w.serving and w.up and w.state == "ejected" and w.ejected_until == 16.0
    assert [c.worker for c in choose(snap, InFlight(), M).candidates] == ["gpu1", "gpu0"], "ejected = panic only"
    assert state.with_ejections_expired(snap, 15.0).worker("gpu0").ejected_until == 16.0
    snap = state.with_ejections_expired(snap, 16.0)
    assert snap.worker("gpu0").serving


def test_repeat_ejections_grow_up_to_the_cap():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"),
                 extra="[outlier]\nconsecutive_failures = 1\neject_s = 10\nmax_eject_s = 25\n")
    snap = snapshot(cfg, {"gpu0": probe(disk=[M])})
    lengths = []
    for round_start in (0.0, 100.0, 200.0):
        snap = state.with_outcome(snap, "gpu0", False, round_start)
        lengths.append(snap.worker("gpu0").ejected_until - round_start)
        snap = state.with_ejections_expired(snap, round_start + 50)
    assert lengths == [10.0, 20.0, 25.0]


def test_never_more_than_the_allowed_share_of_the_fleet_is_ejected():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"),
                 extra="[outlier]\nconsecutive_failures = 1\nmax_ejected_share = 0.5\n")
    snap = snapshot(cfg, {"gpu0": probe(disk=[M]), "gpu1": probe(disk=[M])})
    snap = state.with_outcome(snap, "gpu0", False, 1.0)
    snap = state.with_outcome(snap, "gpu1", False, 1.0)
    assert not snap.worker("gpu0").serving and snap.worker("gpu1").serving


def test_the_retry_budget_allows_a_share_of_traffic_plus_a_floor():
    now = [0.0]
    budget = RetryBudget(clock=lambda: now[0], window_s=10)
    for _ in range(100):
        budget.request()
    allowed = sum(budget.allow_retry(ratio=0.2, min_per_s=0.5) for _ in range(50))
    assert allowed == 20
    now[0] = 11.0  # the window moved on: only the floor remains
    assert sum(budget.allow_retry(ratio=0.2, min_per_s=0.5) for _ in range(50)) == 5


def spilled(disk_gib=4.0, on_gpu=0.5):
    size = int(disk_gib * GIB)
    return Probe(ok=True, models=(ModelEntry(M, size, {}),),
                 resident=(ResidentModel(M, size, int(size * on_gpu), None, None, {}),))


def test_degraded_gpu_workers_rank_after_healthy_ones_and_before_the_cpu_tier():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"), ("cpu0", "cpu"))
    snap = snapshot(cfg, {"gpu0": spilled(), "gpu1": probe(disk=[M]), "gpu2": probe(disk=[M]),
                          "cpu0": probe(disk=[M])})
    snap = state.with_gpu(snap, GpuStatus(True, "", {2: GpuReading(2, False, error="GPU is lost")}))
    assert "spilled to CPU" in snap.worker("gpu0").degraded and "GPU is lost" in snap.worker("gpu2").degraded
    assert snap.worker("gpu0").state == "degraded"
    # limit=4: a plan holds max_attempts (3) candidates unless asked for more; the whole order is the point here
    assert names(choose(snap, InFlight(), M, limit=4)) == [("gpu1", "unknown-vram"), ("gpu0", "degraded"),
                                                           ("gpu2", "degraded"), ("cpu0", "cpu")]
    after = config(("gpu0", "gpu"), ("cpu0", "cpu"), extra='[degraded]\nrank = "after_cpu"\n')
    snap = snapshot(after, {"gpu0": spilled(), "cpu0": probe(disk=[M])})
    assert names(choose(snap, InFlight(), M)) == [("cpu0", "cpu"), ("gpu0", "degraded")]


def test_a_decode_rate_far_below_the_workers_own_marks_it_degraded_for_a_while():
    now = [0.0]
    load = InFlight(clock=lambda: now[0])
    for _ in range(3):
        load.record_rate("gpu0", M, 400.0, slow_factor=5, degraded_s=60)
    load.record_rate("gpu0", M, 20.0, slow_factor=5, degraded_s=60)
    assert "20x below" in load.slow_reason("gpu0") and load.decode_rate("gpu0", M) == 400.0
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M])})
    assert names(choose(snap, load, M))[0] == ("gpu1", "unknown-vram")
    now[0] = 61.0
    assert load.slow_reason("gpu0") is None and names(choose(snap, load, M))[0] == ("gpu0", "resident")


def test_the_cpu_tier_takes_what_it_can_finish_and_refuses_the_rest_clearly():
    cfg = config(("gpu0", "gpu"), ("cpu0", "cpu"),
                 extra="[cpu]\nmax_expected_s = 10\ntokens_per_s = 20\n"
                       "[health]\nunhealthy_threshold = 1\n")
    snap = snapshot(cfg, {"gpu0": probe(disk=[M]), "cpu0": probe(disk=[M])})
    snap = state.with_probe(snap, "gpu0", Probe(ok=False, error="refused"), 101.0)
    small = choose(snap, InFlight(), M, need=Need(prompt_tokens=100, predict_tokens=100))
    assert names(small) == [("cpu0", "cpu"), ("gpu0", "panic")]
    big = choose(snap, InFlight(), M, need=Need(prompt_tokens=100, predict_tokens=1000))
    assert names(big) == [("gpu0", "panic")] and "about 200 tokens at 20 tokens/s" in big.note
    gone = snapshot(config(("cpu0", "cpu"), extra="[cpu]\nmax_expected_s = 10\n"), {"cpu0": probe(disk=[M])})
    refused = choose(gone, InFlight(), M, need=Need(prompt_tokens=0, predict_tokens=5000))
    assert refused.verdict == CPU_REFUSED and "Ask for fewer tokens" in refused.note


def test_a_batching_worker_splitting_its_speed_over_many_streams_is_not_degraded():
    load = InFlight()
    for _ in range(3):
        load.record_rate("gpu0", M, 480.0, slow_factor=5, degraded_s=60)
    load.record_rate("gpu0", M, 74.0, slow_factor=5, degraded_s=60, concurrency=16)
    assert load.slow_reason("gpu0") is None, "16 streams at 74 tokens/s each is 1,184 in all: a busy GPU"
    load.record_rate("gpu0", M, 20.0, slow_factor=5, degraded_s=60, concurrency=2)
    assert "below its usual" in load.slow_reason("gpu0"), "two streams at CPU speed: the GPU is lost"
