"""Two real gateway replicas sharing state through a real redis-server, in front of one simulated
worker with 4 parallel slots: each replica learns the worker's slots from what the worker served
at once for the whole fleet, not from its own share of it. Counting only its own requests, a
replica of N learns about 1/N of the slots and routes as if the worker were full (the replicas
benchmark showed it: queueing, and replicas of a model loaded for nothing)."""

from __future__ import annotations

import asyncio

from tests.conftest import WorkerSpec

MODEL = "small:1b"
# max_inflight: routing lets the requests through whatever it has learned so far; learning is what is under test.
FLEET = (WorkerSpec("gpu0", models=f"{MODEL}=1GiB", tokens_per_s=20, extra_toml="max_inflight = 8\n"),)
WARM = f'[models."{MODEL}"]\nkeep_warm = 1\n'
BODY = {"model": MODEL, "prompt": "hello", "options": {"num_predict": 40}}  # 2 s of generation at 20 tokens/s


async def warm_replicas(redis_server, start_replicas):
    replicas = await start_replicas(2, redis_server.url, *FLEET, config_extra=WARM)
    await replicas.gateways[0].warmer.step()  # loaded before any request: no load time in what is learned
    await replicas.probe()
    await replicas.sync()
    return replicas


async def open_stream(replicas, index: int):
    resp = await replicas.http.post(replicas.urls[index] + "/api/generate", json={**BODY, "stream": True})
    assert resp.status == 200
    await resp.content.readline()  # its first token reached us: the replica has seen its first byte
    return resp


async def whole(replicas, index: int) -> int:
    async with replicas.http.post(replicas.urls[index] + "/api/generate", json={**BODY, "stream": False}) as resp:
        await resp.read()
        return resp.status


async def test_streams_generating_on_another_replica_count_when_slots_are_learned(redis_server, start_replicas):
    replicas = await warm_replicas(redis_server, start_replicas)
    first, second = replicas.gateways
    streams = [await open_stream(replicas, 0) for _ in range(2)]
    await replicas.sync()
    streams += [await open_stream(replicas, 1) for _ in range(2)]
    assert replicas.workers["gpu0"].num_parallel == 4
    assert second.inflight.slots("gpu0", MODEL) == 4, "4 streams generating at once on gpu0, 2 of them ours"
    assert second.cluster.view.started == {("gpu0", MODEL): 2}  # the other replica's streams, as published
    assert first.inflight.slots("gpu0", MODEL) == 2  # it saw only its own two: it learns the rest from the others
    await replicas.sync()
    assert first.load.slots("gpu0", MODEL) == 4
    for resp in streams:
        await resp.read()
        resp.release()


async def test_requests_in_flight_from_another_replica_count_as_peers_of_a_whole_answer(redis_server,
                                                                                        start_replicas):
    replicas = await warm_replicas(redis_server, start_replicas)
    first, second = replicas.gateways
    held = [asyncio.create_task(whole(replicas, 0)) for _ in range(2)]
    for _ in range(200):  # until both are in flight at the worker (they take 2 s there)
        if first.inflight.model_inflight("gpu0", MODEL) == 2:
            break
        await asyncio.sleep(0.01)
    await replicas.sync()
    assert second.cluster.view.claims == {("gpu0", MODEL): 2}
    assert await asyncio.gather(whole(replicas, 1), whole(replicas, 1)) == [200, 200]
    # Neither waited at the worker, with 4 in flight there at once: the worker has at least 4 slots.
    assert second.inflight.slots("gpu0", MODEL) == 4
    assert await asyncio.gather(*held) == [200, 200]
