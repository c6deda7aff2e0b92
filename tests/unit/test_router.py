"""Every placement rule of router.choose, on snapshots built by the real updaters."""

from backends.base import Probe
from gateway import state
from gateway.inflight import InFlight
from gateway.router import QUEUE, UNKNOWN_MODEL, Need, choose
from tests.unit.fleet import busy, config, probe, resident_probe, snapshot, with_vram

M = "llama3:latest"


def names(plan):
    return [(c.worker, c.reason) for c in plan.candidates]


def test_resident_gpu_first_then_gpu_on_disk_then_cpu():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"cpu0": probe(disk=[M], resident=[M]), "gpu0": probe(disk=[M]),
                          "gpu1": probe(disk=[M], resident=[M])})
    assert names(choose(snap, InFlight(), M)) == [("gpu1", "resident"), ("gpu0", "unknown-vram"),
                                                  ("cpu0", "cpu-resident")]


def test_fewest_in_flight_per_slot_first_among_resident_copies():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M], resident=[M])})
    load = InFlight()
    with busy(load, "gpu0", M, 1):
        assert names(choose(snap, load, M))[0] == ("gpu1", "resident")
    with busy(load, "gpu1", M, 1):
        assert names(choose(snap, load, M))[0] == ("gpu0", "resident")


def test_a_conversation_sticks_to_its_worker_while_it_has_a_slot():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M], resident=[M])})
    load = InFlight()
    load.remember_session("s1", "gpu1")
    assert names(choose(snap, load, M, session="s1"))[0] == ("gpu1", "affinity")
    assert names(choose(snap, load, M, session="other"))[0][1] == "resident"
    spread = {choose(snap, load, M, session=f"new-{i}").candidates[0].worker for i in range(20)}
    assert spread == {"gpu0", "gpu1"}, "new conversations spread over equal workers"
    with busy(load, "gpu1", M, 2):  # learned 1 slot + 1 probing request: full
        assert names(choose(snap, load, M, session="s1"))[0] == ("gpu0", "resident")


def test_no_avoidable_load_while_a_resident_copy_has_a_slot():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": resident_probe(resident={M: 2}), "gpu1": resident_probe(disk=[M])})
    plan = choose(snap, InFlight(), M)
    assert plan.candidates[0].worker == "gpu0" and not plan.candidates[0].loads
    assert [c.worker for c in plan.candidates[1:]] == ["gpu1"], "the cold worker is only a failover fallback"


def test_a_copy_still_loading_counts_as_resident_so_a_burst_loads_it_once():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 2}), "gpu1": resident_probe(disk={M: 2})})
    snap = with_vram(snap, {"gpu0": 24, "gpu1": 24})
    load = InFlight()
    first = choose(snap, load, M).candidates[0]
    assert first.loads
    with busy(load, first.worker, M, 1):  # the probe has not seen the load yet
        second = choose(snap, load, M).candidates[0]
        assert (second.worker, second.loads) == (first.worker, False)
        with busy(load, first.worker, M, 1):
            assert choose(snap, load, M).verdict == QUEUE


def test_a_model_our_load_evicted_is_gone_before_the_next_probe_says_so():
    a, b = "a:latest", "b:latest"
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    probes = {"gpu0": resident_probe(disk={M: 8, b: 8}, resident={a: 8, b: 8}), "gpu1": resident_probe(disk={a: 8})}
    snap = with_vram(snapshot(cfg, probes, now=100.0), {"gpu0": 16, "gpu1": 16})
    load = InFlight()
    with load.claim("gpu0", b, now=90.0):
        pass  # b was used before a: the colder one
    with load.claim("gpu0", a, now=95.0):
        pass
    plan = choose(snap, load, M)
    assert names(plan) == [("gpu0", "evict")] and plan.candidates[0].evicts == (b,)
    with load.claim("gpu0", M, now=101.0):
        load.evicting("gpu0", plan.candidates[0].evicts, now=101.0)
    again = choose(snap, load, b).candidates[0]
    assert (again.worker, again.reason, again.evicts) == ("gpu0", "evict", (a,)), "b is gone: reloading it loads"
    assert names(choose(snap, load, a))[0] == ("gpu0", "resident"), "a was not evicted"
    with load.claim("gpu0", b, now=102.0):
        assert names(choose(snap, load, b))[0] == ("gpu0", "resident"), "sent again since: loading again"


def test_busy_resident_copies_mean_wait_unless_the_wait_beats_a_load():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), extra="[routing]\nload_fixed_s = 1\nload_gib_per_s = 2\n")
    snap = snapshot(cfg, {"gpu0": resident_probe(resident={M: 2}), "gpu1": resident_probe(disk={M: 2})})
    snap = with_vram(snap, {"gpu0": 24, "gpu1": 24})
    load = InFlight()
    with busy(load, "gpu0", M, 2):
        assert choose(snap, load, M).verdict == QUEUE, "no service time measured: no reason to load"
        load.finished(M, duration_s=0.5, load_s=None)
        assert choose(snap, load, M, queued=1).verdict == QUEUE, "a 1 s wait is cheaper than a 2 s load"
        load.finished(M, duration_s=30.0, load_s=None)
        plan = choose(snap, load, M, queued=4)
        assert names(plan)[0] == ("gpu1", "replica") and plan.candidates[0].loads
        batch = choose(snap, load, M, queued=4, need=Need(10, 10, batch=True))
        assert batch.verdict == QUEUE, "a batch request never causes a replica load on its own: it waits"


def test_a_cold_model_lands_where_it_fits_most_headroom_first_without_eviction():
    other = "other:latest"
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"))
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 8}, resident={other: 20}),
                          "gpu1": resident_probe(disk={M: 8}, resident={other: 10}),
                          "gpu2": resident_probe(disk={M: 8}, resident={other: 4})})
    snap = with_vram(snap, {"gpu0": 24, "gpu1": 24, "gpu2": 24})
    assert names(choose(snap, InFlight(), M)) == [("gpu2", "fits"), ("gpu1", "fits"), ("gpu0", "evict")]


def test_eviction_picks_the_coldest_idle_unpinned_model():
    a, b, c = "a:latest", "b:latest", "c:latest"
    cfg = config(("gpu0", "gpu"), extra=f'[models."{c}"]\npin = ["gpu0"]\n')
    snap = snapshot(cfg, {"gpu0": resident_probe(disk={M: 6}, resident={a: 8, b: 8, c: 8})})
    snap = with_vram(snap, {"gpu0": 24})
    load = InFlight()
    with load.claim("gpu0", a, now=50.0):
        pass
    with load.claim("gpu0", b, now=10.0):
        pass
    assert choose(snap, load, M).candidates[0].evicts == (b,), "b was used longest ago"
    with busy(load, "gpu0", b, 1):
        assert choose(snap, load, M).candidates[0].evicts == (a,), "a model with requests in flight stays"
        with busy(load, "gpu0", a, 1):
            plan = choose(snap, load, M)
            assert (names(plan), plan.verdict) == ([], "queue"), "pinned c is never evicted; busy ones drain first"
    huge = with_vram(snapshot(cfg, {"gpu0": resident_probe(disk={M: 30}, resident={c: 8})}), {"gpu0": 24})
    assert names(choose(huge, InFlight(), M)) == [("gpu0", "spill")], "a model bigger than the GPU offloads partly"


def test_a_worker_at_max_inflight_is_skipped_and_all_full_means_queue():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), max_inflight={"gpu0": 2, "gpu1": 2})
    snap = snapshot(cfg, {"gpu0": probe(disk=[M]), "gpu1": probe(disk=[M])})
    load = InFlight()
    with busy(load, "gpu0", "x:latest", 2):
        assert names(choose(snap, load, M)) == [("gpu1", "unknown-vram")]
        with busy(load, "gpu1", "x:latest", 2):
            assert choose(snap, load, M).verdict == QUEUE


def test_max_inflight_replaces_learned_slots_for_resident_copies():
    cfg = config(("gpu0", "gpu"), max_inflight={"gpu0": 3})
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M])})
    load = InFlight()
    with busy(load, "gpu0", M, 2):
        assert names(choose(snap, load, M)) == [("gpu0", "resident")]
    with busy(load, "gpu0", M, 3):
        assert choose(snap, load, M).verdict == QUEUE


def test_a_model_no_worker_lists_is_unknown():
    cfg = config(("gpu0", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M])})
    assert choose(snap, InFlight(), "nope:latest").verdict == UNKNOWN_MODEL


def test_down_workers_that_held_the_model_are_tried_last_in_panic():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M]), "cpu0": probe(disk=[M])})
    for _ in range(cfg.health.unhealthy_threshold):
        snap = state.with_probe(snap, "gpu0", Probe(ok=False, error="refused"), 101.0)
    assert not snap.worker("gpu0").up
    assert names(choose(snap, InFlight(), M)) == [("gpu1", "unknown-vram"), ("cpu0", "cpu"), ("gpu0", "panic")]


def test_before_any_worker_answered_every_worker_is_tried_blind():
    cfg = config(("cpu0", "cpu"), ("gpu0", "gpu"))
    snap = snapshot(cfg, {})
    assert names(choose(snap, InFlight(), M)) == [("gpu0", "panic"), ("cpu0", "panic")]




def test_a_drained_worker_is_never_chosen_not_even_in_panic():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": probe(disk=[M], resident=[M]), "gpu1": probe(disk=[M])})
    snap = state.with_drain(snap, "gpu0", True, 1.0)
    assert [c.worker for c in choose(snap, InFlight(), M).candidates] == ["gpu1"]
    for i in range(cfg.health.unhealthy_threshold):
        snap = state.with_probe(snap, "gpu1", Probe(ok=False, error="refused"), 2.0 + i)
    assert names(choose(snap, InFlight(), M)) == [("gpu1", "panic")], "panic tries the down worker, not the drained"


# -- load-time options: a copy with other options is no loaded copy for the request ----------------

def ctx_probe(disk: dict, resident: dict):
    """Models on disk (name -> GiB) and resident (name -> (GiB, /api/ps context_length))."""
    from backends.base import ModelEntry, ResidentModel

    gib = 1024**3
    return Probe(ok=True, version="0.12.6",
                 models=tuple(ModelEntry(n, int(s * gib), {"name": n}) for n, s in disk.items()),
                 resident=tuple(ResidentModel(n, int(s * gib), int(s * gib), None, ctx, {"name": n})
                                for n, (s, ctx) in resident.items()))


def asking(**options) -> Need:
    from gateway.load_options import read_options

    return Need(100, 100, options=read_options(options))


def two_contexts():
    """gpu0 holds M at 4096, gpu1 at 8192 (from their probes); gpu2 has room and no copy."""
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"))
    snap = snapshot(cfg, {"gpu0": ctx_probe({M: 2}, {M: (2, 4096)}), "gpu1": ctx_probe({M: 2}, {M: (2, 8192)}),
                          "gpu2": ctx_probe({M: 2}, {})})
    return with_vram(snap, {"gpu0": 24, "gpu1": 24, "gpu2": 24})


def test_a_request_goes_to_the_copy_loaded_with_its_num_ctx():
    snap, load = two_contexts(), InFlight()
    assert names(choose(snap, load, M, need=asking(num_ctx=8192)))[0] == ("gpu1", "resident")
    assert names(choose(snap, load, M, need=asking(num_ctx=4096)))[0] == ("gpu0", "resident")
    assert {choose(snap, load, M, session=f"s{i}", need=asking()).candidates[0].worker for i in range(20)} == \
           {"gpu0", "gpu1"}, "copies known only from /api/ps are taken to have the worker's default options"
    assert names(choose(snap, load, M, need=Need(100, 100)))[0][1] == "resident", "options not read: any copy"


def test_a_num_ctx_no_copy_has_is_a_load_where_a_cold_one_would_go_and_reloads_a_copy_only_after():
    snap = two_contexts()
    plan = choose(snap, InFlight(), M, need=asking(num_ctx=16384))
    assert names(plan) == [("gpu2", "options"), ("gpu0", "options"), ("gpu1", "options")]
    assert all(c.loads for c in plan.candidates), "each one loads the model: counted as a load, reason options"


def test_a_reload_takes_the_idle_copy_before_the_busy_one():
    cfg = config(("gpu0", "gpu"), ("gpu1", "gpu"))
    snap = snapshot(cfg, {"gpu0": ctx_probe({M: 2}, {M: (2, 4096)}), "gpu1": ctx_probe({M: 2}, {M: (2, 4096)})})
    snap, load = with_vram(snap, {"gpu0": 2, "gpu1": 2}), InFlight()
    with busy(load, "gpu0", M, 1):
        assert names(choose(snap, load, M, need=asking(num_ctx=8192))) == [("gpu1", "options"), ("gpu0", "options")]


def test_what_the_gateway_sent_a_copy_is_its_options_until_a_later_probe_shows_another_context():
    from gateway.load_options import read_options

    snap, load = two_contexts(), InFlight()  # probed at t=100
    load.sent_options("gpu0", M, read_options({"num_ctx": 16384}), 150.0)  # sent after the probe: it reloads
    assert names(choose(snap, load, M, need=asking(num_ctx=16384)))[0] == ("gpu0", "resident")
    assert names(choose(snap, load, M, need=asking(num_ctx=4096)))[0][1] == "options", "gpu0 holds 16384 now"
    load.sent_options("gpu1", M, read_options({"num_ctx": 16384}), 50.0)  # a probe after it says 8192: reloaded since
    assert names(choose(snap, load, M, need=asking(num_ctx=8192)))[0] == ("gpu1", "resident")


def test_no_num_ctx_does_not_match_a_copy_the_gateway_loaded_with_one():
    from gateway.load_options import read_options

    snap, load = two_contexts(), InFlight()
    load.sent_options("gpu0", M, read_options({"num_ctx": 4096}), 150.0)
    load.sent_options("gpu1", M, read_options({"num_ctx": 8192}), 150.0)
    assert names(choose(snap, load, M, need=asking()))[0] == ("gpu2", "options")


def test_num_ctx_past_the_models_training_context_matches_the_clamped_copy():
    from backends.base import ModelShape

    snap = state.with_shapes(two_contexts(), {M: ModelShape(16, 8, 64, 8192)})
    assert names(choose(snap, InFlight(), M, need=asking(num_ctx=131072)))[0] == ("gpu1", "resident")


def test_a_llamacpp_copy_too_short_for_num_ctx_serves_only_when_nothing_else_can():
    from gateway.config import parse_config

    text = ('[[workers]]\nname = "ll0"\nurl = "http://ll0:8080"\nkind = "llamacpp"\ntier = "gpu"\n'
            '[[workers]]\nname = "ol0"\nurl = "http://ol0:11434"\nkind = "ollama"\ntier = "gpu"\n')
    short = ctx_probe({M: 2}, {M: (2, 4096)})  # llama-server -c 4096
    snap = snapshot(parse_config(text.encode()), {"ll0": short, "ol0": ctx_probe({M: 2}, {})})
    assert names(choose(snap, InFlight(), M, need=asking(num_ctx=4096)))[0] == ("ll0", "resident")
    assert names(choose(snap, InFlight(), M, need=asking(num_ctx=8192))) == [("ol0", "options"),
                                                                               ("ll0", "short-context")]
    alone = snapshot(parse_config(text.split("[[workers]]\nname = \"ol0\"")[0].encode()), {"ll0": short})
    assert names(choose(alone, InFlight(), M, need=asking(num_ctx=8192))) == [("ll0", "short-context")]
