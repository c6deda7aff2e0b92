"""The official `openai` Python client, pointed at the gateway as base_url=.../v1, works unchanged
(sync and async, whole and streamed), against simulated Ollama workers and an OpenAI-kind worker."""

import asyncio
import json

import openai
import pytest

from tests.conftest import WorkerSpec

MODELS = "llama3.2:1b=1.3GiB,all-minilm:latest=0.045GiB"
ASK = [{"role": "user", "content": "why is the sky blue?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0", MODELS), WorkerSpec("gpu1", MODELS),
                             WorkerSpec("cpu0", "llama3.2:1b=1.3GiB", tier="cpu"))


@pytest.fixture
def client(fleet):
    return openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


async def test_models_list_and_one_model(client):
    listed = await client.models.list()
    assert {m.id for m in listed.data} == {"llama3.2:1b", "all-minilm:latest"}
    assert all(m.object == "model" and m.owned_by == "library" and isinstance(m.created, int) for m in listed.data)
    assert (await client.models.retrieve("all-minilm")).id == "all-minilm:latest"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("does-not-exist")


async def test_chat_whole_and_streamed(client):
    whole = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_tokens=4)
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content and choice.finish_reason == "length"
    assert whole.usage.completion_tokens == 4
    stream = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_tokens=4, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content, "same prompt, same tokens"
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].usage is None


async def test_stream_usage_comes_when_asked(client):
    stream = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_completion_tokens=3,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


async def test_completions_whole_and_streamed(client):
    whole = await client.completions.create(model="llama3.2:1b", prompt="count", max_tokens=3, stop=["zzz"])
    assert whole.choices[0].text and whole.usage.completion_tokens == 3
    parts = [c async for c in await client.completions.create(model="llama3.2:1b", prompt="count", max_tokens=3,
                                                               stream=True)]
    assert "".join(p.choices[0].text for p in parts if p.choices) == whole.choices[0].text


async def test_embeddings(client):
    embedded = await client.embeddings.create(model="all-minilm", input=["first", "second"])
    assert [row.index for row in embedded.data] == [0, 1] and len(embedded.data[0].embedding) == 384
    single = await client.embeddings.create(model="all-minilm", input="first", encoding_format="float")
    assert single.data[0].embedding == embedded.data[0].embedding


async def test_tool_call_round_trip(client):
    first = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, tools=[WEATHER])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    follow_up = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "blue"}'}]
    second = await client.chat.completions.create(model="llama3.2:1b", messages=follow_up, tools=[WEATHER],
                                                  max_tokens=3)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


async def test_json_response_formats_are_passed_on(client):
    for fmt in ({"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}):
        answer = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, response_format=fmt)
        assert isinstance(json.loads(answer.choices[0].message.content), dict)


async def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="does-not-exist", messages=ASK)
    assert info.value.status_code == 404 and "not found" in info.value.message
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="does-not-exist", input="x")


async def test_bad_requests_raise_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="llama3.2:1b", messages=ASK, n=2)
    assert "n = 2" in info.value.message, "Ollama workers answer one choice: refused, not answered short"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="llama3.2:1b", messages=[])


async def test_the_sync_client_works_too(fleet):
    def use() -> tuple:
        client = openai.OpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
        listed = client.models.list()
        whole = client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_tokens=2)
        parts = list(client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_tokens=2, stream=True))
        embedded = client.embeddings.create(model="all-minilm", input="x")
        try:
            client.chat.completions.create(model="nope", messages=ASK)
        except openai.NotFoundError:
            missing = True
        return listed, whole, parts, embedded, missing

    listed, whole, parts, embedded, missing = await asyncio.to_thread(use)
    assert len(listed.data) == 2 and whole.choices[0].message.content and missing
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == whole.choices[0].message.content
    assert len(embedded.data[0].embedding) == 384


async def test_an_openai_kind_worker_takes_the_client_through_with_n(start_fleet):
    fleet = await start_fleet(WorkerSpec("oai0", MODELS, kind="openai"))
    client = openai.AsyncOpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)
    answer = await client.chat.completions.create(model="llama3.2:1b", messages=ASK, max_tokens=2, n=2)
    assert answer.choices[0].message.content, "a generic OpenAI worker is trusted with n"
    parts = [c async for c in await client.chat.completions.create(model="llama3.2:1b", messages=ASK,
                                                                    max_tokens=2, stream=True)]
    assert parts[-1].choices[0].finish_reason == "length"
    assert len((await client.embeddings.create(model="all-minilm", input="x")).data[0].embedding) == 384
