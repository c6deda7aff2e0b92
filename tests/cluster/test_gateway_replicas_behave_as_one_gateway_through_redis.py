"""Three real gateway replicas in front of one simulated fleet, sharing state through a real
redis-server: a burst for a cold model loads it once in the whole fleet, a conversation keeps its
worker whichever replica takes the turn, a key's limits hold fleet-wide, an ejection by one
replica holds on all, a drain too; with Redis gone each replica serves alone and says so, and
when it returns they share again. The same fleet without Redis shows what sharing prevents."""

from __future__ import annotations

import asyncio

from gateway import state
from gateway.access import hash_key
from tests.conftest import WorkerSpec

COLD = "big:7b"
FLEET = (WorkerSpec("gpu0", models=f"{COLD}=4GiB,small:1b=1GiB", load_s_per_gib=0.15, tokens_per_s=400),
         WorkerSpec("gpu1", models=f"{COLD}=4GiB,small:1b=1GiB", load_s_per_gib=0.15, tokens_per_s=400),
         WorkerSpec("gpu2", models=f"{COLD}=4GiB,small:1b=1GiB", load_s_per_gib=0.15, tokens_per_s=400))


async def generate(replicas, index: int, model: str = COLD, headers: dict | None = None, **extra) -> tuple[int, str]:
    body = {"model": model, "prompt": "hello", "stream": False, "options": {"num_predict": 8}, **extra}
    async with replicas.http.post(replicas.urls[index] + "/api/generate", json=body, headers=headers or {}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("X-Beacon-Worker", "")


def loads(replicas, model: str = COLD) -> int:
    return sum(w.stats.loads.count(model) for w in replicas.workers.values())


async def burst_where_replicas_would_place_it_apart(replicas) -> list[tuple[int, str]]:
    """Replica 0 sees gpu0 as drained (its own, unpublished view), so it loads the cold model on
    another worker; replicas 1 and 2 would each place it on gpu0. Then a burst over all three."""
    first = replicas.gateways[0]
    first.holder.update(lambda s: state.with_drain(s, "gpu0", True, first.clock()))
    started = asyncio.create_task(generate(replicas, 0))
    await asyncio.sleep(0.1)  # replica 0's load is under way
    rest = await asyncio.gather(*(generate(replicas, 1 + i % 2) for i in range(8)))
    return [await started, *rest]


async def test_a_burst_for_a_cold_model_over_three_replicas_loads_it_once(redis_server, start_replicas):
    replicas = await start_replicas(3, redis_server.url, *FLEET)
    results = await burst_where_replicas_would_place_it_apart(replicas)
    assert [status for status, _ in results] == [200] * 9
    assert loads(replicas) == 1, [w.stats.loads for w in replicas.workers.values()]
    assert len({worker for _, worker in results}) == 1 and results[0][1] != "gpu0"  # all on replica 0's copy


async def test_without_shared_state_the_same_burst_loads_the_model_twice(start_replicas):
    replicas = await start_replicas(3, None, *FLEET)
    results = await burst_where_replicas_would_place_it_apart(replicas)
    assert [status for status, _ in results] == [200] * 9
    assert loads(replicas) == 2  # what the shared load lock prevents


async def test_a_conversation_keeps_its_worker_whichever_replica_takes_the_turn(redis_server, start_replicas):
    replicas = await start_replicas(3, redis_server.url, *FLEET, config_extra='[models."small:1b"]\nkeep_warm = 3\n')
    for gw in replicas.gateways:
        await gw.warmer.step()
    await replicas.probe()
    session = {"X-Session-Id": "conversation-42"}
    _, first = await generate(replicas, 0, "small:1b", session)
    await asyncio.sleep(0.05)  # the replica remembers the turn in Redis after answering (not on the request path)
    turns = [await generate(replicas, i, "small:1b", session) for i in (1, 2, 1, 2)]
    assert {worker for _, worker in turns} == {first}


async def test_a_keys_limits_hold_across_replicas(redis_server, start_replicas):
    config = (f'[[clients]]\nname = "team"\nkey_sha256 = "{hash_key("k1")}"\nmax_concurrent = 2\n'
              f'requests_per_minute = 5\n')
    slow = tuple(WorkerSpec(s.name, models=s.models, tokens_per_s=20, load_s_per_gib=0.01) for s in FLEET)
    replicas = await start_replicas(2, redis_server.url, *slow, config_extra=config)
    key = {"Authorization": "Bearer k1"}
    held = [asyncio.create_task(generate(replicas, i, "small:1b", key, options={"num_predict": 40})) for i in (0, 1)]
    await asyncio.sleep(0.3)  # both slow requests are in flight, one on each replica
    status, _ = await generate(replicas, 0, "small:1b", key)
    assert status == 429  # the other replica's request counts against max_concurrent
    assert [s for s, _ in await asyncio.gather(*held)] == [200, 200]
    statuses = [(await generate(replicas, i % 2, "small:1b", key))[0] for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # 5 a minute in the whole fleet: 2 + 3, the 6th is refused


async def test_an_ejection_and_a_drain_on_one_replica_hold_on_all(redis_server, start_replicas):
    config = "[outlier]\nconsecutive_failures = 2\neject_s = 60\nmax_ejected_share = 0.5\n"
    replicas = await start_replicas(3, redis_server.url, *FLEET, config_extra=config)
    replicas.workers["gpu0"].set_mode("error")
    for _ in range(6):
        await generate(replicas, 0, "small:1b")
    assert replicas.gateways[0].holder.current.worker("gpu0").ejected_until > 0
    await replicas.sync()
    for gw in replicas.gateways[1:]:
        assert gw.holder.current.worker("gpu0").ejected_until > 0
        assert "another gateway replica" in gw.holder.current.worker("gpu0").last_error
    await replicas.gateways[1].cluster.publish_drain("gpu1", True)
    await replicas.sync()
    assert all(gw.holder.current.worker("gpu1").drained for gw in replicas.gateways)
    await replicas.gateways[2].cluster.publish_drain("gpu1", False)
    await replicas.sync()
    assert not any(gw.holder.current.worker("gpu1").drained for gw in replicas.gateways)


async def test_redis_going_away_costs_no_request_and_sharing_resumes_when_it_returns(redis_server, start_replicas):
    replicas = await start_replicas(2, redis_server.url, *FLEET)
    assert [(await generate(replicas, i, "small:1b"))[0] for i in (0, 1)] == [200, 200]
    await replicas.gateways[0].cluster.publish_drain("gpu2", True)  # a drain must outlive a Redis restart
    await replicas.sync()
    await redis_server.stop()
    traffic = [asyncio.create_task(generate(replicas, i % 2, "small:1b")) for i in range(10)]
    await replicas.sync()
    assert [s for s, _ in await asyncio.gather(*traffic)] == [200] * 10
    for url in replicas.urls:
        async with replicas.http.get(url + "/health") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["cluster"]["mode"] == "local"
        assert any("redis unreachable" in p for p in health["problems"])
        async with replicas.http.get(url + "/metrics") as resp:
            text = await resp.text()
        assert 'beacon_cluster_mode{mode="local"} 1.0' in text
    await redis_server.start()
    await replicas.sync()
    assert all(gw.cluster.mode == "shared" and gw.cluster.view.replicas == 2 for gw in replicas.gateways)
    assert [w.drained for w in (gw.holder.current.worker("gpu2") for gw in replicas.gateways)] == [True, True]
    assert [(await generate(replicas, i, "small:1b"))[0] for i in (0, 1)] == [200, 200]
