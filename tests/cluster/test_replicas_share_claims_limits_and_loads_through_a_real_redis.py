"""The shared-state core against a real redis-server: two replicas see each other's claims, a
dead replica's lease runs out, limits and cold-load single flight hold across replicas, and
Redis going away turns each replica into a lone process until it returns."""

from __future__ import annotations

from gateway.cluster import LONE, Cluster, LocalState


def state(claims=None, depths=None, slots=None, used=None) -> LocalState:
    return LocalState(claims=claims or {}, used=used or {}, evicted={}, depths=depths or {},
                      slots=slots or {}, service_s={"m": 2.0}, load_s={})


def replica(url: str | None, name: str, box: dict, **kwargs) -> Cluster:
    return Cluster(url, lambda: box.get(name, state()), replica_id=name, **kwargs)


async def test_each_replica_sees_the_others_claims_depths_and_slots(redis_server):
    box = {"a": state(claims={("gpu0", "m"): 3}, depths={"m": 2}, slots={("gpu0", "m"): 4}, used={("gpu0", "m"): 7.0}),
           "b": state(claims={("gpu0", "m"): 1, ("gpu1", "x"): 2})}
    a, b = replica(redis_server.url, "a", box), replica(redis_server.url, "b", box)
    await a.start()
    await b.start()
    await a.step()
    assert a.view.replicas == 2 and b.view.replicas == 2
    assert a.view.claims == {("gpu0", "m"): 1, ("gpu1", "x"): 2}  # only the others': its own it knows exactly
    assert b.view.claims == {("gpu0", "m"): 3} and b.view.workers == {"gpu0": 3}
    assert b.view.depths == {"m": 2} and b.view.slots == {("gpu0", "m"): 4}
    assert b.view.busy == {"m": {"gpu0": 3}} and b.view.used == {"m": {"gpu0": 7.0}}
    assert b.view.by_worker == {"gpu0": {"m": 7.0}} and b.view.service_s == {"m": 2.0}
    await a.close()
    await b.step()
    assert b.view.claims == {} and b.view.replicas == 1  # a replica that leaves takes its claims along
    await b.close()


async def test_a_replica_that_stops_syncing_loses_its_claims_within_its_lease(redis_server):
    box = {"dead": state(claims={("gpu0", "m"): 5})}
    dead = replica(redis_server.url, "dead", box, lease_s=0.3)
    alive = replica(redis_server.url, "alive", box, lease_s=0.3)
    await dead.start()
    await alive.start()
    assert alive.view.claims == {("gpu0", "m"): 5}
    import asyncio

    await asyncio.sleep(0.45)  # the lease itself is what is under test: real time must pass
    await alive.step()
    assert alive.view.claims == {} and alive.view.replicas == 1
    await alive.close()


async def test_concurrency_and_rate_limits_hold_across_replicas(redis_server):
    box: dict = {}
    a, b = replica(redis_server.url, "a", box), replica(redis_server.url, "b", box)
    await a.start()
    await b.start()
    assert await a.enter("team", 2) == 1
    assert await b.enter("team", 2) == 2
    assert await a.enter("team", 2) == -2  # refused: the other replica's place counts
    await b.leave("team")
    assert await a.enter("team", 2) == 2
    assert await a.rate("team", 2) == 0.0 and await b.rate("team", 2) == 0.0
    wait = await a.rate("team", 2)
    assert wait is not None and 1.0 <= wait <= 60.0
    await a.close()
    await b.close()


async def test_one_replica_loads_a_cold_model_and_the_others_are_told_where(redis_server):
    box: dict = {}
    a, b = replica(redis_server.url, "a", box), replica(redis_server.url, "b", box)
    await a.start()
    await b.start()
    assert await a.claim_load("m", "gpu0", 5) == "gpu0"
    assert await b.claim_load("m", "gpu1", 5) == "gpu0"
    await b.release_load("m", "gpu1")  # not its lock: nothing changes
    assert await b.claim_load("m", "gpu1", 5) == "gpu0"
    await a.release_load("m", "gpu0")
    assert await b.claim_load("m", "gpu1", 5) == "gpu1"
    await a.remember_session("conv", "gpu1")
    assert await b.session_worker("conv") == "gpu1"
    await a.publish_ejection("gpu2", 1e12)
    await a.publish_drain("gpu3", True)
    await b.step()
    assert b.view.ejections == {"gpu2": 1e12} and b.view.drained == frozenset({"gpu3"})
    await a.close()
    await b.close()


async def test_redis_going_away_turns_replicas_into_lone_processes_until_it_returns(redis_server):
    box = {"b": state(claims={("gpu0", "m"): 1})}
    a, b = replica(redis_server.url, "a", box), replica(redis_server.url, "b", box)
    modes: list[str] = []
    a.on_mode(modes.append)
    await a.start()
    await b.start()
    await a.step()
    assert a.mode == "shared" and a.view.claims
    await redis_server.stop()
    await a.step()
    assert a.mode == "local" and a.view is LONE and "redis unreachable" in a.problem
    assert await a.enter("team", 1) is None and await a.session_worker("conv") is None  # callers go local
    await redis_server.start()
    await b.step()
    await a.step()
    assert a.mode == "shared" and a.view.claims == {("gpu0", "m"): 1}  # b re-published on its own step
    assert modes == ["local", "shared"]
    await a.close()
    await b.close()


async def test_without_a_url_the_gateway_is_one_process_and_needs_nothing(redis_server):
    alone = replica(None, "a", {})
    await alone.start()
    await alone.step()
    assert alone.mode == "alone" and alone.view is LONE and not alone.enabled
    assert await alone.claim_load("m", "gpu0", 5) == "gpu0"
    assert await alone.enter("team", 1) is None and await alone.rate("team", 1) is None
