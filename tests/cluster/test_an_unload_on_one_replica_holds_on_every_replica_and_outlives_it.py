"""Two real gateway replicas sharing state through a real redis-server: a model unloaded through
one replica (`ollama stop`) is not loaded again by the other replica's warmer, though that replica
saw recent demand and the model is kept warm; the unload still holds once the replica that took
it has left; and a request through the other replica ends it there."""

from __future__ import annotations

from tests.conftest import WorkerSpec

M = "small:1b"
FLEET = (WorkerSpec("gpu0", models=f"{M}=1GiB"), WorkerSpec("gpu1", models=f"{M}=1GiB"))


def holding(replicas) -> list[str]:
    return sorted(name for name, w in replicas.workers.items() if M in w.loaded)


async def generate(replicas, index: int, **body) -> int:
    payload = {"model": M, "stream": False, "options": {"num_predict": 2}, **body}
    async with replicas.http.post(replicas.urls[index] + "/api/generate", json=payload) as resp:
        await resp.read()
        return resp.status


async def warmer_round(replicas, indexes=(0, 1)) -> list:
    await replicas.probe()
    planned = []
    for i in indexes:
        planned += await replicas.gateways[i].warmer.step()
    return planned


async def test_an_unload_through_one_replica_holds_on_the_other_until_a_request_there(redis_server, start_replicas):
    replicas = await start_replicas(2, redis_server.url, *FLEET, config_extra=f'[models."{M}"]\nkeep_warm = 1\n')
    await replicas.gateways[1].warmer.step()
    assert await generate(replicas, 1, prompt="hi") == 200  # demand on replica 1, as well as keep_warm
    assert len(holding(replicas)) == 1
    await replicas.sync()

    assert await generate(replicas, 0, keep_alive=0) == 200
    assert holding(replicas) == []
    await replicas.sync()
    assert await warmer_round(replicas) == [] and holding(replicas) == []

    await replicas.gateways[0].cluster.close()  # the replica that took the unload leaves (its lease goes with it)
    await replicas.gateways[1].cluster.step()
    assert replicas.gateways[1].cluster.view.replicas == 1
    assert await warmer_round(replicas, (1,)) == [] and holding(replicas) == []

    assert await generate(replicas, 1, prompt="hi again") == 200
    [loaded] = holding(replicas)
    replicas.workers[loaded].unload_now(M)  # its keep_alive ran out, say
    assert [w.reason for w in await warmer_round(replicas, (1,))] == ["keep_warm"]
    assert len(holding(replicas)) == 1
