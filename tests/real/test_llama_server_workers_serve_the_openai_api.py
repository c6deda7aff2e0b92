"""Real llama-server workers (single-model and router mode) behind the gateway's /v1 API, driven with
the official openai client: bodies pass through under the worker's own model id, streams relay."""

import json

import openai
import pytest

from tests.conftest import WorkerSpec

ASK = [{"role": "user", "content": "why is the sky blue?"}]


@pytest.fixture
async def single(llama_server, tiny_models, start_fleet):
    server = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a", parallel=2,
                                extra=("--embeddings", "--pooling", "mean"))
    fleet = await start_fleet(WorkerSpec("llama0", kind="llamacpp", url=server.url))
    fleet.client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    return fleet


async def test_the_official_client_suite_on_a_single_model_server(single):
    client = single.client
    assert [m.id for m in (await client.models.list()).data] == ["tiny-a:latest"]
    whole = await client.chat.completions.create(model="tiny-a", messages=ASK, max_tokens=5, seed=1)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 5
    chunks = [c async for c in await client.chat.completions.create(
        model="tiny-a", messages=ASK, max_completion_tokens=4, stream=True, stream_options={"include_usage": True})]
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-2].choices[0].finish_reason == "length"
    done = await client.completions.create(model="tiny-a:latest", prompt="the sky", max_tokens=3, stop=["\n"])
    assert done.choices[0].finish_reason in ("length", "stop") and done.usage.completion_tokens <= 3
    embedded = await client.embeddings.create(model="tiny-a", input=["one", "two"])
    assert len(embedded.data) == 2 and len(embedded.data[0].embedding) == 64
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nope", messages=ASK)


async def test_n_tools_and_json_format_are_passed_on(single):
    client = single.client
    several = await client.chat.completions.create(model="tiny-a", messages=ASK, max_tokens=2, n=2)
    assert [c.index for c in several.choices] == [0, 1], "llama-server answers n choices itself"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    answer = await client.chat.completions.create(model="tiny-a", messages=ASK, max_tokens=2, tools=[tool])
    assert answer.choices[0].finish_reason in ("length", "stop", "tool_calls")
    raw = await client.completions.create(model="tiny-a", prompt="<s>answer:", max_tokens=16,
                                          extra_body={"json_schema": {}})  # llama.cpp's own field, passed on
    assert raw.choices[0].text.lstrip().startswith(("{", "[")), "the JSON constraint reached the worker"


async def test_a_worker_refusal_comes_back_openai_shaped(single):
    # This tiny vocabulary makes llama-server's chat-path JSON grammar fail: a real 400 from the worker.
    with pytest.raises(openai.BadRequestError) as info:
        await single.client.chat.completions.create(model="tiny-a", messages=ASK,
                                                    response_format={"type": "json_object"})
    assert "sampler" in info.value.message


async def test_tokens_and_decode_rate_are_learnt_from_llama_timings(single):
    await single.client.chat.completions.create(model="tiny-a", messages=ASK, max_tokens=6)
    assert single.gateway.inflight.decode_rate("llama0", "tiny-a:latest")


async def test_router_mode_gets_the_model_under_its_own_id(llama_server, tiny_models, start_fleet):
    server = await llama_server(models_dir=tiny_models["tiny-a"].parent, models_max=1, parallel=2)
    fleet = await start_fleet(WorkerSpec("router0", kind="llamacpp", url=server.url))
    client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    assert {m.id for m in (await client.models.list()).data} == {"tiny-a:latest", "tiny-b:latest"}
    for model in ("tiny-b:latest", "tiny-a"):  # the worker knows them as "tiny-b" and "tiny-a"
        parts = [c async for c in await client.chat.completions.create(model=model, messages=ASK, max_tokens=3,
                                                                        stream=True)]
        assert parts[-1].choices[0].finish_reason == "length"
        assert json.loads(parts[-1].model_dump_json())["model"] == model.split(":")[0]
