"""The simulated worker's /v1 endpoints answer in OpenAI's shapes as Ollama serves them, over the
same residency, slots and pacing as the native API."""

from functools import partial

import orjson
import pytest


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB,all-minilm=0.05GiB")


CHAT = {"model": "a:1b", "messages": [{"role": "user", "content": "hello there"}]}


def events(raw: bytes) -> list:
    chunks = raw.split(b"\n\n")
    assert chunks[-1] == b"" and all(c.startswith(b"data: ") for c in chunks[:-1])
    return [c[6:].decode() if c == b"data: [DONE]" else orjson.loads(c[6:]) for c in chunks[:-1]]


async def test_a_chat_completion_is_one_object_with_usage(sim):
    worker, client = await sim()
    resp = await client.post("/v1/chat/completions", json=CHAT | {"max_tokens": 4})
    body = await resp.json()
    assert resp.status == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert worker.stats.loads == ["a:1b"] and "a:1b" in worker.loaded, "the same engine loaded it"


async def test_a_streamed_chat_is_sse_chunks_then_usage_then_done(sim):
    _, client = await sim()
    body = CHAT | {"stream": True, "stream_options": {"include_usage": True}}
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    chunks = events(await resp.read())
    assert chunks[-1] == "[DONE]"
    usage, final, tokens = chunks[-2], chunks[-3], chunks[:-3]
    assert len(tokens) == 24 and all(c["object"] == "chat.completion.chunk" for c in tokens)
    assert all(c["choices"][0]["delta"]["content"] and c["choices"][0]["finish_reason"] is None for c in tokens)
    assert final["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 24
    whole = await (await client.post("/v1/chat/completions", json=CHAT)).json()
    assert "".join(c["choices"][0]["delta"]["content"] for c in tokens) == whole["choices"][0]["message"]["content"]
    plain = events(await (await client.post("/v1/chat/completions", json=CHAT | {"stream": True})).read())
    assert "usage" not in plain[-2] and plain[-2]["choices"][0]["finish_reason"] == "stop"


async def test_tools_and_json_response_formats_carry_over(sim):
    _, client = await sim()
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    called = await (await client.post("/v1/chat/completions", json=CHAT | {"tools": tools})).json()
    choice = called["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"] == {"name": "lookup", "arguments": "{}"}
    fmt = {"response_format": {"type": "json_object"}}
    text = (await (await client.post("/v1/chat/completions", json=CHAT | fmt)).json())["choices"][0]["message"]
    assert isinstance(orjson.loads(text["content"]), dict)


async def test_completions_answer_text(sim):
    _, client = await sim()
    body = await (await client.post("/v1/completions", json={"model": "a:1b", "prompt": "once", "max_tokens": 3}))\
        .json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"]
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3
    resp = await client.post("/v1/completions", json={"model": "a:1b", "prompt": "once", "stream": True})
    chunks = events(await resp.read())
    assert chunks[-1] == "[DONE]" and chunks[0]["choices"][0]["text"]


async def test_embeddings_and_model_listings(sim):
    _, client = await sim()
    body = await (await client.post("/v1/embeddings", json={"model": "all-minilm", "input": ["a", "b"]})).json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 384 and body["usage"]["prompt_tokens"] == 2
    native = await (await client.post("/api/embed", json={"model": "all-minilm", "input": "a"})).json()
    assert native["embeddings"][0] == body["data"][0]["embedding"]
    models = await (await client.get("/v1/models")).json()
    assert models["object"] == "list" and {m["id"] for m in models["data"]} == {"a:1b", "all-minilm:latest"}
    assert all(m["object"] == "model" and m["owned_by"] == "library" for m in models["data"])
    one = await (await client.get("/v1/models/a:1b")).json()
    assert one["id"] == "a:1b" and one["object"] == "model"


async def test_errors_are_openai_shaped(sim):
    _, client = await sim()
    for method, path, body in (("POST", "/v1/chat/completions", CHAT | {"model": "nope"}),
                               ("POST", "/v1/embeddings", {"model": "nope", "input": "x"}),
                               ("GET", "/v1/models/nope", None)):
        resp = await client.request(method, path, json=body)
        error = (await resp.json())["error"]
        assert resp.status == 404 and error["type"] == "invalid_request_error" and "nope" in error["message"]
        assert error["param"] is None and error["code"] is None
    resp = await client.post("/v1/chat/completions", json={"messages": []})
    assert resp.status == 400 and (await resp.json())["error"]["message"] == "model is required"
