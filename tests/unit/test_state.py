import asyncio

from backends.base import Probe
from gateway import state
from gateway.state import SnapshotHolder
from tests.unit.fleet import config, probe, snapshot

M = "llama3:latest"
DOWN = Probe(ok=False, error="refused")


def test_a_new_worker_serves_after_its_first_good_probe_and_names_are_canonical():
    snap = snapshot(config(("gpu0", "gpu")), {})
    assert not snap.worker("gpu0").up and snap.worker("gpu0").state == "unknown"
    snap = state.with_probe(snap, "gpu0", probe(disk=["Llama3"], resident=["llama3:latest"]), 1.0)
    worker = snap.worker("gpu0")
    assert worker.up and worker.state == "healthy"
    assert set(worker.models) == {M} and set(worker.resident) == {M}


def test_fall_after_unhealthy_threshold_and_rise_after_healthy_threshold():
    cfg = config(("gpu0", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M])})
    for i in range(cfg.health.unhealthy_threshold - 1):
        snap = state.with_probe(snap, "gpu0", DOWN, 2.0 + i)
        assert snap.worker("gpu0").up, "one bad probe must not take a worker out"
    snap = state.with_probe(snap, "gpu0", DOWN, 9.0)
    assert not snap.worker("gpu0").up and snap.worker("gpu0").last_error == "refused"
    assert M in snap.worker("gpu0").models, "last known models are kept for panic routing"
    snap = state.with_probe(snap, "gpu0", probe(disk=[M]), 10.0)
    assert not snap.worker("gpu0").up, "a fallen worker must rise through healthy_threshold probes"
    snap = state.with_probe(snap, "gpu0", probe(disk=[M]), 11.0)
    assert snap.worker("gpu0").up


def test_a_refused_connection_in_traffic_marks_the_worker_down_at_once():
    snap = snapshot(config(("gpu0", "gpu")), {"gpu0": probe(disk=[M])})
    after = state.with_failure(snap, "gpu0", "cannot connect", 5.0)
    assert not after.worker("gpu0").up and after.version == snap.version + 1
    assert state.with_failure(after, "gpu0", "again", 6.0) is after


def test_reload_keeps_what_was_learned_of_unchanged_workers_only():
    snap = snapshot(config(("gpu0", "gpu"), ("gpu1", "gpu")), {"gpu0": probe(disk=[M]), "gpu1": probe(disk=[M])})
    new_cfg = config(("gpu0", "gpu"), ("gpu2", "gpu"))
    after = state.with_config(snap, new_cfg, wall_now=1.0, now=2.0)
    assert list(after.workers) == ["gpu0", "gpu2"]
    assert after.worker("gpu0").up and not after.worker("gpu2").up
    assert after.config is new_cfg


def test_a_worker_a_reload_adds_warms_before_traffic_and_a_drain_survives_probes_and_reloads():
    snap = snapshot(config(("gpu0", "gpu")), {"gpu0": probe(disk=[M])})
    snap = state.with_drain(snap, "gpu0", True, 3.0)
    assert snap.worker("gpu0").live_state(inflight=2, slow=None) == "draining"
    assert snap.worker("gpu0").live_state(inflight=0, slow=None) == "drained"
    snap = state.with_probe(snap, "gpu0", probe(disk=[M]), 4.0)
    assert snap.worker("gpu0").drained and not snap.worker("gpu0").serving, "a good probe does not undo a drain"
    snap = state.with_config(snap, config(("gpu0", "gpu"), ("gpu1", "gpu")), wall_now=1.0, now=5.0)
    assert snap.worker("gpu0").drained
    snap = state.with_probe(snap, "gpu1", probe(disk=[M]), 6.0)
    gpu1 = snap.worker("gpu1")
    assert gpu1.up and gpu1.warming and not gpu1.serving and gpu1.state == "warming"
    snap = state.with_warmed(snap, {"gpu1"}, 7.0)
    assert snap.worker("gpu1").serving and snap.worker("gpu1").state == "healthy"
    snap = state.with_drain(snap, "gpu0", False, 8.0)
    assert snap.worker("gpu0").serving
    assert state.with_drain(snap, "gpu0", False, 9.0) is snap, "no change, no new snapshot"


def test_a_probe_for_a_worker_removed_meanwhile_changes_nothing():
    snap = snapshot(config(("gpu0", "gpu")), {})
    assert state.with_probe(snap, "gone", probe(), 1.0) is snap


async def test_holder_wakes_waiters_with_the_new_snapshot():
    holder = SnapshotHolder(snapshot(config(("gpu0", "gpu")), {}))
    waiter = asyncio.create_task(holder.changed())
    await asyncio.sleep(0)
    new = holder.update(lambda s: state.with_probe(s, "gpu0", probe(disk=[M]), 1.0))
    assert await waiter is new


def test_a_probe_round_is_one_new_snapshot_and_keeps_the_listing_index_while_nothing_loads():
    cfg = config(*((f"gpu{i}", "gpu") for i in range(50)))
    probes = {f"gpu{i}": probe(disk=[M, "other:latest"], resident=[M] if i % 10 == 0 else []) for i in range(50)}
    snap = state.with_probes(snapshot(cfg, {}), probes, 1.0)
    assert snap.version == 2, "fifty results, one swap"
    assert set(snap.holders(M)) == {f"gpu{i}" for i in range(50)}
    assert list(snap.listing.resident[M]) == ["gpu0", "gpu10", "gpu20", "gpu30", "gpu40"]
    again = state.with_probes(snap, probes, 3.0)
    assert again.version == 3 and again.listing is snap.listing, "nothing listed changed: the index holds"
    loaded = state.with_probes(again, {"gpu1": probe(disk=[M, "other:latest"], resident=[M])}, 5.0)
    assert loaded.listing is not again.listing and "gpu1" in loaded.listing.resident[M]
    assert state.with_drain(loaded, "gpu3", True, 6.0).listing is loaded.listing, "a drain lists nothing new"


def test_the_placement_index_is_healthy_gpus_by_free_vram_most_first():
    from tests.unit.fleet import resident_probe, with_vram

    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"), ("cpu0", "cpu"))
    snap = snapshot(cfg, {"gpu0": resident_probe(resident={M: 10}), "gpu1": resident_probe(resident={M: 2}),
                          "gpu2": resident_probe(), "cpu0": resident_probe()})
    snap = with_vram(state.with_drain(snap, "gpu2", True, 101.0), {"gpu0": 24, "gpu1": 24, "gpu2": 24})
    placed = snap.placement
    assert [name for _, _, name in placed.by_free] == ["gpu1", "gpu0"]
    assert [name for _, name in placed.cpus] == ["cpu0"] and placed.down == () and placed.ever_up
    assert placed.probe_floor == 100.0


def test_footprints_of_models_no_worker_lists_are_forgotten_once_there_are_many():
    """A worker names models at will: 5,000 loaded names, then a listing of one, must not stay learned."""
    cfg = config(("gpu0", "gpu"))
    names = [f"junk{i}:1b" for i in range(5000)]
    snap = snapshot(cfg, {"gpu0": probe(disk=names, resident=names)})
    assert len(snap.footprints) == 5000
    snap = state.with_probes(snap, {"gpu0": probe(disk=["real:1b"], resident=["real:1b"])}, 200.0)
    assert dict(snap.footprints) == {"real:1b": 2**30}
