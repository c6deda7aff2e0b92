"""The simulated worker runs num_parallel generations per model, queues the rest first come first
served, answers 503 past max_queue, and stops a generation at once when its client goes away."""

import asyncio
from functools import partial

import pytest

BUSY = {"error": "server busy, please try again.  maximum pending requests exceeded"}


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB,b:1b=1GiB", tokens_per_s=400.0)


async def until(condition, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


def generate(client, tokens: int, model: str = "a:1b", **extra):
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": tokens}, **extra}
    return client.post("/api/generate", json=body)


async def test_num_parallel_run_at_once_and_the_rest_wait_their_turn_in_order(sim):
    worker, client = await sim(num_parallel=2, tokens_per_s=200)
    finished: list[int] = []

    async def one(i: int) -> None:
        async with generate(client, 40) as resp:
            assert resp.status == 200
            finished.append(i)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(one(i)))
        await until(lambda n=i + 1: worker.active + worker.queued + worker.stats.completed == n)
    assert (worker.active, worker.queued, worker.stats.completed) == (2, 3, 0)
    await asyncio.gather(*tasks)
    assert finished[2:] == [2, 3, 4], "queued requests are served first come first served"
    assert worker.stats.completed == 5 and (worker.active, worker.queued) == (0, 0)


async def test_slots_are_per_model(sim):
    worker, client = await sim(num_parallel=1, tokens_per_s=100)
    a = asyncio.create_task(generate(client, 20))
    await until(lambda: worker.active == 1)
    b = asyncio.create_task(generate(client, 1, model="b:1b"))
    await until(lambda: worker.stats.completed == 1)
    assert not a.done(), "b did not wait for a's slot"
    assert (await a).status == (await b).status == 200


async def test_past_max_queue_the_answer_is_503_server_busy(sim):
    worker, client = await sim(num_parallel=1, max_queue=2, tokens_per_s=100)
    held = [asyncio.create_task(generate(client, 20))]
    await until(lambda: worker.active == 1)
    held += [asyncio.create_task(generate(client, 1)) for _ in range(2)]
    await until(lambda: worker.queued == 2)
    for path, body in (("/api/generate", {"prompt": "x"}), ("/api/chat", {"messages": [{"role": "user"}]}),
                       ("/api/embed", {"input": "x"})):
        resp = await client.post(path, json={"model": "a:1b", **body})
        assert (resp.status, await resp.json()) == (503, BUSY)
    assert [(await t).status for t in held] == [200, 200, 200]


async def test_a_client_that_leaves_mid_stream_stops_its_generation_and_frees_the_slot(sim):
    worker, client = await sim(num_parallel=1, tokens_per_s=50)
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "x", "options": {"num_predict": 500}})
    await resp.content.readline()
    resp.close()
    await until(lambda: worker.stats.cancelled == 1)
    assert worker.active == 0 and worker.stats.completed == 0
    assert (await generate(client, 1)).status == 200, "the slot is free again"


async def test_a_client_that_leaves_while_queued_gives_up_its_place(sim):
    worker, client = await sim(num_parallel=1, tokens_per_s=50)
    running = asyncio.create_task(generate(client, 15))
    await until(lambda: worker.active == 1)
    waiting = asyncio.create_task(generate(client, 1))
    await until(lambda: worker.queued == 1)
    waiting.cancel()
    await until(lambda: worker.queued == 0)
    assert worker.stats.cancelled == 1 and (await running).status == 200
    assert worker.stats.completed == 1 and worker.active == 0
