"""The simulated worker bounds an answer as Ollama's context does (llm/llama_server.go,
boundedNumPredict; server/sched.go): num_ctx is the request's or the default for the worker's
VRAM, at most the model's training context; an open-ended or oversized num_predict stops at ten
contexts with context shift (the default), at the end of the context without it. A huge
num_predict costs no memory up front: the tokens are made as they are sent."""

import tracemalloc
from functools import partial

import pytest

from local_workers.sim import SimModel

GIB = 2**30
CONTEXT = 4096  # parse_models gives a model a 4096-token training context


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB")


async def generate(client, **body) -> dict:
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "why is the sky blue", "stream": False,
                                                    **body})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_num_predict_ten_to_the_eighteen_streams_ten_contexts_in_bounded_memory(sim):
    worker, client = await sim()
    tracemalloc.start()
    try:
        resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "go on forever",
                                                        "options": {"num_predict": 10**18, "num_ctx": 10**9}})
        assert resp.status == 200
        lines, last = 0, b""
        async for line in resp.content:
            lines, last = lines + 1, line
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == 10 * CONTEXT + 1 and b'"done":true' in last and b'"done_reason":"length"' in last
    assert b'"eval_count":%d' % (10 * CONTEXT) in last
    assert peak < 16 * 2**20, f"an answer of {10 * CONTEXT} tokens took {peak / 2**20:.1f} MiB"
    assert worker.active == 0 and worker.stats.completed == 1


async def test_a_whole_answer_and_a_v1_answer_stop_at_ten_contexts_too(sim):
    _, client = await sim()
    body = await generate(client, options={"num_predict": 10**18, "num_ctx": 64})
    assert (body["eval_count"], body["done_reason"]) == (640, "length")
    assert len(body["response"].split()) == 640
    resp = await client.post("/v1/chat/completions", json={"model": "a:1b", "max_tokens": 10**18,
                                                           "messages": [{"role": "user", "content": "hi"}]})
    answer = await resp.json()
    assert answer["usage"]["completion_tokens"] == 10 * CONTEXT and answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("num_predict", [-1, -2, -100, None])
async def test_an_open_ended_answer_ends_where_the_model_stops_by_itself(sim, num_predict):
    _, client = await sim()
    body = await generate(client, options={"num_predict": num_predict})
    assert (body["eval_count"], body["done_reason"]) == (24, "stop")


async def test_without_context_shift_an_answer_ends_where_the_context_is_full(sim):
    _, client = await sim()
    five_words = {"prompt": "why is the sky blue", "shift": False, "options": {"num_ctx": 20}}
    body = await generate(client, **five_words | {"options": {"num_ctx": 20, "num_predict": 1000}})
    assert (body["prompt_eval_count"], body["eval_count"], body["done_reason"]) == (5, 15, "length")
    body = await generate(client, **five_words | {"options": {"num_ctx": 20, "num_predict": -1}})
    assert (body["eval_count"], body["done_reason"]) == (15, "length"), "the context ends before the model stops"
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "word " * 30, "shift": False,
                                                    "options": {"num_ctx": 20}})
    assert resp.status == 400 and "the prompt is longer than the context length" in (await resp.json())["error"]


async def test_with_context_shift_a_long_prompt_is_truncated_and_the_answer_runs_on(sim):
    _, client = await sim()
    body = await generate(client, prompt="word " * 100, options={"num_ctx": 64, "num_predict": 100})
    assert body["prompt_eval_count"] == 64 - (64 - 4) // 2 and body["eval_count"] == 100


async def test_num_predict_is_read_as_ollama_reads_an_integer_option(sim):
    _, client = await sim()
    assert (await generate(client, options={"num_predict": 5.7}))["eval_count"] == 5
    for wrong in ("10", True, [3]):
        body = {"model": "a:1b", "prompt": "x", "options": {"num_predict": wrong}}
        resp = await client.post("/api/generate", json=body)
        assert resp.status == 400 and (await resp.json())["error"] == 'option "num_predict" must be of type integer'


@pytest.mark.parametrize(("vram_gib", "num_ctx"), [(8, 4096), (24, 32768), (48, 65536)])
async def test_the_default_context_follows_the_workers_vram_up_to_the_models_own(start_sim, vram_gib, num_ctx):
    model = SimModel("a:1b", GIB, context_length=65536)
    _, client = await start_sim(models=[model], vram_bytes=vram_gib * GIB)
    body = await generate(client, prompt="one two three four five", shift=False, options={"num_predict": 10**6})
    assert body["eval_count"] == num_ctx - 5
