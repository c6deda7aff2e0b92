from gateway.inflight import SLOT_CAP, InFlight

M = "m:latest"


def test_claims_count_per_worker_and_model_and_always_release():
    load = InFlight()
    with load.claim("gpu0", M, now=5.0):
        with load.claim("gpu0", "other:latest"):
            assert load.get("gpu0") == 2 and load.model_inflight("gpu0", M) == 1
    assert load.get("gpu0") == 0 and load.model_inflight("gpu0", M) == 0
    try:
        with load.claim("gpu0", M):
            raise RuntimeError("the request failed")
    except RuntimeError:
        pass
    assert load.get("gpu0") == 0
    assert load.last_used("gpu0", M) == 5.0


def test_slots_are_learned_from_streams_generating_at_once():
    load = InFlight()
    assert load.slots("gpu0", M) == 1
    with load.claim("gpu0", M) as a, load.claim("gpu0", M) as b, load.claim("gpu0", M) as c:
        a.first_byte()
        b.first_byte()
        b.first_byte()  # a claim counts once however often it is told
        assert load.slots("gpu0", M) == 2
        c.first_byte()
        assert load.slots("gpu0", M) == 3
    with load.claim("gpu0", M) as d:
        d.first_byte()
    assert load.slots("gpu0", M) == 3, "learned slots are kept after the burst"


def test_learned_slots_are_capped():
    load = InFlight()
    from contextlib import ExitStack

    with ExitStack() as stack:
        for _ in range(SLOT_CAP + 5):
            stack.enter_context(load.claim("gpu0", M)).first_byte()
    assert load.slots("gpu0", M) == SLOT_CAP


def test_service_and_load_times_are_smoothed_and_tiny_loads_ignored():
    load = InFlight()
    assert load.service_s(M) is None and load.load_s(M) is None
    load.finished(M, 1.0, load_s=2.0)
    load.finished(M, 2.0, load_s=0.001)
    assert 1.0 < load.service_s(M) < 2.0
    assert load.load_s(M) == 2.0


def test_sessions_remember_the_last_worker_and_forget_the_oldest():
    load = InFlight(max_sessions=2)
    load.remember_session("a", "gpu0")
    load.remember_session("b", "gpu1")
    load.remember_session("a", "gpu2")
    load.remember_session("c", "gpu0")
    assert load.session_worker("a") == "gpu2" and load.session_worker("b") is None
    assert load.session_worker(None) is None


def test_a_request_served_without_waiting_teaches_the_slots_it_shared():
    load = InFlight()
    with load.claim("gpu0", M), load.claim("gpu0", M), load.claim("gpu0", M) as third:
        assert third.peers == 3
    load.learn_slots("gpu0", M, third.peers)
    assert load.slots("gpu0", M) == 3
    load.learn_slots("gpu0", M, 2)
    assert load.slots("gpu0", M) == 3, "slots never shrink from a smaller observation"


def test_recent_use_and_evictions_are_read_newest_first_and_stop_at_the_oldest_asked():
    load = InFlight()
    with load.claim("gpu0", M, now=10.0):
        pass
    with load.claim("gpu1", M, now=20.0):
        held = list(load.used_since(M, 15.0))
    assert held == ["gpu1"]
    with load.claim("gpu2", M, now=30.0), load.claim("gpu0", M, now=40.0):
        assert set(load.used_since(M, 25.0)) == {"gpu2", "gpu0"}
        assert dict(load.busy_on(M)) == {"gpu2": 1, "gpu0": 1}
    assert list(load.used_since(M, 25.0)) == ["gpu0", "gpu2"] and not load.busy_on(M)
    load.evicting("gpu1", ["x:latest"], now=50.0)
    assert list(load.evicted_since(45.0)) == ["gpu1"] and dict(load.evicted_on("x:latest")) == {"gpu1": 50.0}
    assert load.active_models("gpu0", since=35.0) == [M] and load.active_models("gpu9", since=0.0) == []


def test_a_clock_that_goes_back_still_finds_every_recent_use():
    load = InFlight()
    with load.claim("gpu0", M, now=50.0):
        pass
    with load.claim("gpu1", M, now=5.0):  # earlier than the last: the time order no longer holds
        pass
    assert set(load.used_since(M, 4.0)) == {"gpu0", "gpu1"}
    assert list(load.used_since(M, 10.0)) == ["gpu0"]
