"""Two real gateway replicas sharing state through a real redis-server, in front of one worker
that takes one request at a time: a request that waits in replica B's queue because replica A's
request holds the worker is sent as soon as B's next sync shows that request gone. Nothing of
B's own ends, its snapshot does not change and no probe runs, so only the sync can wake it (the
replicas benchmark showed what waiting for B's own next event instead costs: the p99 TTFT of 4
replicas 13-23% above one replica's)."""

from __future__ import annotations

import asyncio

from tests.conftest import WorkerSpec

MODEL = "small:1b"
FLEET = (WorkerSpec("gpu0", models=f"{MODEL}=1GiB", tokens_per_s=40, extra_toml="max_inflight = 1\n"),)
CONFIG = f'[models."{MODEL}"]\nkeep_warm = 1\n[admission]\nqueue_timeout_s = 20\n'


async def generate(replicas, index: int, num_predict: int) -> int:
    body = {"model": MODEL, "prompt": "hello", "stream": False, "options": {"num_predict": num_predict}}
    async with replicas.http.post(replicas.urls[index] + "/api/generate", json=body) as resp:
        await resp.read()
        return resp.status


async def until(check, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def test_the_waiting_request_goes_on_the_sync_that_shows_the_worker_free(redis_server, start_replicas):
    replicas = await start_replicas(2, redis_server.url, *FLEET, config_extra=CONFIG)
    await replicas.gateways[0].warmer.step()
    await replicas.probe()
    first, second = replicas.gateways
    held = asyncio.create_task(generate(replicas, 0, 20))  # half a second on the worker's one slot
    await until(lambda: first.inflight.model_inflight("gpu0", MODEL) == 1)
    await replicas.sync()
    waiting = asyncio.create_task(generate(replicas, 1, 4))
    await until(lambda: second.admission.depth(MODEL) == 1)  # the worker is full fleet-wide: it waits
    assert await held == 200
    await until(lambda: first.inflight.model_inflight("gpu0", MODEL) == 0)
    await asyncio.sleep(0.2)
    assert second.admission.depth(MODEL) == 1, "nothing but a sync can tell it the worker is free"
    await replicas.sync()
    assert await asyncio.wait_for(waiting, 2) == 200
