"""An explicit unload holds the warmer off a model (re-arm, pin, keep_warm, recent demand) until a
request asks for it again; the unload record is kept per model and ends with that request; an
unload another replica took is adopted unless a request came here since, and our own unload
coming back from the others is not taken for a later one."""

from datetime import UTC, datetime

from gateway.inflight import InFlight
from gateway.warmer import plan_warmups
from tests.unit.fleet import config, resident_probe, snapshot

M = "llama3:latest"
NOW_WALL = 1_700_000_000.0
WANTS = f'[models."{M}"]\nkeep_warm = 2\npin = ["gpu0"]\n[warmer]\nrearm_before_s = 60\n'


def fleet():
    expiring = datetime.fromtimestamp(NOW_WALL + 10, UTC).isoformat()
    return snapshot(config(("gpu0", "gpu"), ("gpu1", "gpu"), ("gpu2", "gpu"), extra=WANTS),
                    {"gpu0": resident_probe(disk={M: 4}), "gpu2": resident_probe(disk={M: 4}),
                     "gpu1": resident_probe(resident={M: 4}, expires={M: expiring})})


def plan(inflight: InFlight, now: float = 100.0):
    return [(w.worker, w.reason) for w in plan_warmups(fleet(), inflight, dict(inflight.demand()), now, NOW_WALL,
                                                       set(inflight.held_unloaded()))]


def test_an_unloaded_model_is_neither_rearmed_pinned_nor_kept_warm_until_a_request_asks_for_it():
    inflight = InFlight()
    inflight.requested(M, 90.0)
    assert sorted(plan(inflight)) == [("gpu0", "pin"), ("gpu1", "rearm")], "the control: the warmer wants it"
    inflight.unloaded(M, 95.0)
    assert plan(inflight) == []
    inflight.requested(M, 99.0)
    assert sorted(plan(inflight)) == [("gpu0", "pin"), ("gpu1", "rearm")]
    assert inflight.held_unloaded() == {}, "the record ends with the request"


def test_a_request_that_unloads_after_answering_holds_too():
    inflight = InFlight()
    inflight.requested(M, 95.0)  # what serve() does for keep_alive 0 with a prompt: demand, then the unload
    inflight.unloaded(M, 95.0)
    assert plan(inflight) == []


def test_another_replicas_unload_is_adopted_unless_a_request_came_here_since():
    held, served = InFlight(), InFlight()
    served.requested(M, 97.0)
    for inflight in (held, served):
        inflight.demanded.adopt(M, 96.0)
    assert held.held_unloaded() == {M: 96.0}
    assert served.held_unloaded() == {}


def test_our_own_unload_coming_back_from_the_others_is_not_a_later_unload():
    inflight = InFlight()
    inflight.unloaded(M, 96.0)
    inflight.demanded.adopt(M, 96.0004)  # our wall-clock time, turned back into our clock by another replica
    assert inflight.held_unloaded() == {M: 96.0}
    inflight.demanded.adopt(M, 120.0)  # a later unload elsewhere
    assert inflight.held_unloaded() == {M: 120.0}
