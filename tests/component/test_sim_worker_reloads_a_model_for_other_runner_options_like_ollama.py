"""The simulated worker reloads a loaded model for a request whose runner options differ from the
copy's, as Ollama's scheduler does (server/sched.go needsReload): num_ctx as settled (clamped to the
model's training context), num_gpu unless the request's is negative, and the other runner options.
The reload waits for the copy's requests in flight, is a load (stats, load_duration), never an
eviction, and /api/ps reports the context the copy was loaded with."""

import asyncio

from local_workers.sim import SimModel

GIB = 1024**3


async def gen(client, **options):
    body = {"model": "a:1b", "prompt": "x", "stream": False, "options": {"num_predict": 2, **options}}
    resp = await client.post("/api/generate", json=body)
    assert resp.status == 200
    return await resp.json()


async def ps_context(client) -> int:
    return (await (await client.get("/api/ps")).json())["models"][0]["context_length"]


async def start(start_sim, **options):
    return await start_sim(models=[SimModel("a:1b", GIB, context_length=16384)], vram_bytes=8 * GIB, **options)


async def test_another_num_ctx_reloads_the_copy_and_ps_shows_the_context_it_was_loaded_with(start_sim):
    worker, client = await start(start_sim)
    await gen(client)
    assert await ps_context(client) == 4096, "Ollama's default context for a GPU below 23 GiB"
    assert (await gen(client, num_ctx=4096))["load_duration"] == 0, "the same context: no reload"
    assert (await gen(client, num_ctx=8192))["load_duration"] > 0
    assert await ps_context(client) == 8192
    assert (await gen(client, num_ctx=65536))["load_duration"] > 0 and await ps_context(client) == 16384
    assert (await gen(client, num_ctx=32768))["load_duration"] == 0, "both clamp to the training context"
    assert worker.stats.loads == ["a:1b"] * 3 and worker.stats.evictions == []


async def test_num_gpu_left_to_ollama_matches_any_copy_and_any_other_runner_option_reloads(start_sim):
    worker, client = await start(start_sim)
    await gen(client, num_gpu=20)
    assert (await gen(client))["load_duration"] == 0 and (await gen(client, num_gpu=-1))["load_duration"] == 0
    assert (await gen(client, num_gpu=10))["load_duration"] > 0
    assert (await gen(client, num_gpu=10, num_batch=128))["load_duration"] > 0
    assert (await gen(client, num_gpu=10, num_batch=128, temperature=0.1))["load_duration"] == 0, "not a runner one"
    assert len(worker.stats.loads) == 3


async def test_a_reload_waits_for_the_requests_in_flight_on_the_old_copy(start_sim):
    worker, client = await start(start_sim, tokens_per_s=100)
    long = asyncio.create_task(gen(client, num_predict=40))
    for _ in range(200):
        if worker.active:
            break
        await asyncio.sleep(0.01)
    other = asyncio.create_task(gen(client, num_ctx=8192))
    for _ in range(200):
        if worker.loaded["a:1b"].draining:
            break
        await asyncio.sleep(0.01)
    assert worker.loaded["a:1b"].runner.num_ctx == 4096 and not long.done(), "the old copy finishes its request"
    assert (await long)["eval_count"] == 40
    assert (await other)["load_duration"] > 0 and worker.loaded["a:1b"].runner.num_ctx == 8192
