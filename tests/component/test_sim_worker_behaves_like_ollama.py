"""The simulated worker itself: residency, eviction, slots, queue and failure modes as Ollama."""

import asyncio

import orjson
import pytest

from backends.sim import SimWorker, build_sim_app, parse_models

GIB = 1024**3


@pytest.fixture
async def sim(aiohttp_client):
    async def start(**options):
        options.setdefault("models", parse_models("a:1b=3GiB,b:1b=3GiB,c:1b=3GiB"))
        options.setdefault("vram_bytes", 8 * GIB)
        options.setdefault("load_s_per_gib", 0.01)
        options.setdefault("tokens_per_s", 5000)
        worker = SimWorker(**options)
        return worker, await aiohttp_client(build_sim_app(worker))

    return start


async def gen(client, model, **extra):
    resp = await client.post("/api/generate", json={"model": model, "prompt": "x", "stream": False, **extra})
    return resp.status, await resp.json()


async def test_loads_on_demand_and_evicts_the_idle_model_that_expires_first(sim):
    worker, client = await sim()
    await gen(client, "a:1b", keep_alive="10m")
    await gen(client, "b:1b", keep_alive="1m")
    status, body = await gen(client, "c:1b")  # 9 GiB do not fit in 8: one must go
    assert status == 200 and body["load_duration"] > 0
    assert worker.stats.evictions == ["b:1b"] and set(worker.loaded) == {"a:1b", "c:1b"}
    ps = await (await client.get("/api/ps")).json()
    assert {m["name"] for m in ps["models"]} == {"a:1b", "c:1b"}
    assert all(m["size_vram"] == m["size"] == 3 * GIB and m["expires_at"] for m in ps["models"])


async def test_empty_prompt_loads_and_keep_alive_zero_unloads(sim):
    worker, client = await sim()
    status, body = await gen(client, "a:1b", prompt="")
    assert body["done_reason"] == "load" and "a:1b" in worker.loaded
    status, body = await gen(client, "a:1b", prompt="", keep_alive=0)
    assert body["done_reason"] == "unload" and "a:1b" not in worker.loaded
    await gen(client, "a:1b", keep_alive=0)
    assert "a:1b" not in worker.loaded, "keep_alive 0 unloads right after answering"


async def test_a_model_that_does_not_fit_waits_for_a_busy_one_to_finish(sim):
    worker, client = await sim(vram_bytes=4 * GIB, tokens_per_s=50)
    first = asyncio.create_task(gen(client, "a:1b", options={"num_predict": 10}))
    while not worker.active:
        await asyncio.sleep(0.005)
    status, _ = await gen(client, "b:1b")
    assert status == 200 and (await first)[0] == 200
    assert worker.stats.evictions == ["a:1b"], "evicted only once it was idle"


async def test_slots_then_a_bounded_queue_then_503(sim):
    worker, client = await sim(num_parallel=1, max_queue=1, tokens_per_s=20)
    slow = {"options": {"num_predict": 20}}
    running = asyncio.create_task(gen(client, "a:1b", **slow))
    while not worker.active:
        await asyncio.sleep(0.005)
    queued = asyncio.create_task(gen(client, "a:1b", **slow))
    while not worker.queued:
        await asyncio.sleep(0.005)
    status, body = await gen(client, "a:1b")
    assert status == 503 and "server busy" in body["error"]
    assert [(await running)[0], (await queued)[0]] == [200, 200]


async def test_failure_modes_switch_while_it_runs(sim):
    worker, client = await sim()
    resp = await client.post("/_sim/mode", json={"mode": "error"})
    assert (await resp.json()) == {"mode": "error"}
    assert (await gen(client, "a:1b"))[0] == 500
    assert (await client.get("/api/tags")).status == 200, "listings still answer in error mode"
    worker.set_mode("gpu_lost")
    await gen(client, "a:1b")
    ps = await (await client.get("/api/ps")).json()
    assert ps["models"][0]["size_vram"] == 0 < ps["models"][0]["size"]
    worker.set_mode("hang")
    hung = asyncio.create_task(client.get("/"))
    await asyncio.sleep(0.05)
    assert not hung.done()
    worker.set_mode("ok")
    assert (await hung).status == 200
    assert (await client.post("/_sim/mode", json={"mode": "sideways"})).status == 400


async def test_drop_mode_cuts_a_stream_after_a_few_tokens(sim):
    worker, client = await sim()
    worker.set_mode("drop")
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "x"})
    with pytest.raises(Exception):  # noqa: B017 - aiohttp raises a payload error for the cut body
        await resp.read()


async def test_streams_end_with_every_final_field_and_headers_wait_for_the_first_token(sim):
    worker, client = await sim(load_s_per_gib=0.1)
    resp = await client.post("/api/chat", json={"model": "a:1b", "messages": [{"role": "user", "content": "hi"}],
                                                "options": {"num_predict": 3}})
    assert "a:1b" in worker.loaded, "the answer's headers came only after the load"
    lines = [orjson.loads(x) for x in (await resp.read()).splitlines()]
    assert [x["done"] for x in lines] == [False, False, False, True]
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 3
    assert lines[-1]["load_duration"] >= 0.3e9


async def test_errors_unknown_paths_and_methods_look_like_ollama(sim):
    _, client = await sim()
    assert (await gen(client, "missing:1b"))[1]["error"] == 'model "missing:1b" not found, try pulling it first'
    resp = await client.post("/api/generate", data=b"{oops")
    assert resp.status == 400
    assert (await client.post("/api/generate", json={"prompt": "x"})).status == 400
    resp = await client.get("/nope")
    assert resp.status == 404 and await resp.text() == "404 page not found"
    assert (await client.get("/api/generate")).status == 405


async def test_embeddings_are_deterministic_unit_vectors(sim):
    _, client = await sim(models=parse_models("all-minilm=0.05GiB"))
    one = await (await client.post("/api/embed", json={"model": "all-minilm", "input": ["x", "y"]})).json()
    two = await (await client.post("/api/embed", json={"model": "all-minilm", "input": "x"})).json()
    assert len(one["embeddings"]) == 2 and one["embeddings"][0] == two["embeddings"][0]
    assert abs(sum(v * v for v in one["embeddings"][0]) - 1.0) < 1e-6
    legacy = await (await client.post("/api/embeddings", json={"model": "all-minilm", "prompt": "x"})).json()
    assert legacy["embedding"] == one["embeddings"][0]
