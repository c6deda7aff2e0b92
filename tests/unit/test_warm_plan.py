"""plan_warmups: re-arm before expiry, pins, keep_warm copies, demand; never evict busy models."""

import time
from datetime import UTC, datetime

from backends.ollama import timestamp
from gateway.inflight import InFlight
from gateway.warmer import plan_warmups
from tests.unit.fleet import busy, config, resident_probe, snapshot, with_vram

M = "llama3:latest"
NOW_WALL = 1_700_000_000.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def plan(snap, load=None, demand=None, now=100.0):
    return [(w.worker, w.model, w.reason) for w in plan_warmups(snap, load or InFlight(), demand or {}, now, NOW_WALL)]


def test_keep_warm_loads_copies_where_they_fit_most_headroom_first():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"),
                 extra=f'[models."{M}"]\nkeep_warm = 2\nkeep_alive = "30m"\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 4}, resident={"x:latest": 18}),
                          "gpu1": resident_probe(disk={M: 4}), "gpu2": resident_probe(disk={M: 4},
                                                                                   resident={"y:latest": 10})})
    snap = with_vram(snap, {"gpu0": 24, "gpu1": 24, "gpu2": 24})
    warmups = plan_warmups(snap, InFlight(), {}, 100.0, NOW_WALL)
    assert [(w.worker, w.reason, w.keep_alive) for w in warmups] == [("gpu1", "keep_warm", "30m"),
                                                                       ("gpu2", "keep_warm", "30m")]


def test_enough_resident_copies_far_from_expiry_need_nothing():
    cfg = config(("gpu0", "gpu"), extra=f'[models."{M}"]\nkeep_warm = 1\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(resident={M: 4}, expires={M: iso(NOW_WALL + 3600)})})
    assert plan(snap) == []


def test_a_copy_about_to_expire_is_rearmed():
    cfg = config(("gpu0", "gpu"), extra=f'[models."{M}"]\nkeep_warm = 1\n[warmer]\nrearm_before_s = 60\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(resident={M: 4}, expires={M: iso(NOW_WALL + 30)})})
    assert plan(snap) == [("gpu0", M, "rearm")]


def test_pinned_models_load_on_their_workers():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), extra=f'[models."{M}"]\npin = ["gpu1"]\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 4}), "gpu1": resident_probe(disk={M: 4})})
    assert plan(snap) == [("gpu1", M, "pin")]


def test_recent_demand_keeps_a_model_on_one_gpu_and_old_demand_does_not():
    cfg = config(("gpu0", "gpu"), extra="[warmer]\ndemand_window_s = 60\n")
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 4})})
    assert plan(snap, demand={M: 90.0}, now=100.0) == [("gpu0", M, "demand")]
    assert plan(snap, demand={M: 10.0}, now=100.0) == []


def test_a_warm_up_never_evicts_a_model_with_requests_in_flight():
    busy_model = "busy:latest"
    cfg = config(("gpu0", "gpu"), extra=f'[models."{M}"]\nkeep_warm = 1\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 8}, resident={busy_model: 20})})
    snap = with_vram(snap, {"gpu0": 24})
    load = InFlight()
    assert plan(snap, load) == [("gpu0", M, "keep_warm")], "an idle model may make room"
    with busy(load, "gpu0", busy_model):
        assert plan(snap, load) == []


def test_ollama_timestamps_are_read_with_their_nanoseconds():
    assert timestamp("2024-06-04T14:38:31.837531234-07:00") == datetime(
        2024, 6, 4, 21, 38, 31, 837531, UTC).timestamp()
    assert timestamp("2318-01-01T00:00:00Z") > time.time()
    assert timestamp("not a date") is None and timestamp(None) is None
