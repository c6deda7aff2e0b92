"""The simulated worker answers /api/generate, /api/chat, /api/embed and the listings in Ollama's
shapes: NDJSON streams whose headers wait for the first token, every final field, JSON formats,
tool calls, Ollama's errors, deterministic text and embeddings."""

import time
from datetime import datetime
from functools import partial

import orjson
import pytest

GIB = 1024**3
FINAL_NS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB,nomic-embed-text=0.25GiB")


async def lines_of(resp) -> list[dict]:
    return [orjson.loads(line) for line in (await resp.read()).splitlines()]


async def test_generate_streams_one_line_per_token_then_every_final_field(sim):
    worker, client = await sim()
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "why is the sky blue",
                                                    "options": {"num_predict": 5}})
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    lines = await lines_of(resp)
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    assert all(line["model"] == "a:1b" and line["response"].startswith(" ") for line in lines[:-1])
    assert datetime.fromisoformat(lines[0]["created_at"]).utcoffset().total_seconds() == 0
    final = lines[-1]
    assert final["done_reason"] == "length" and final["eval_count"] == 5 and final["prompt_eval_count"] == 5
    assert all(isinstance(final[k], int) and final[k] >= 0 for k in FINAL_NS) and final["eval_duration"] > 0
    assert final["total_duration"] >= final["load_duration"] > 0
    assert final["context"] and all(isinstance(t, int) for t in final["context"])
    assert worker.stats.completed == 1 and worker.active == 0


async def test_the_same_prompt_gets_the_same_words_streamed_or_whole(sim):
    _, client = await sim()
    body = {"model": "a:1b", "prompt": "tell me"}
    streamed = await lines_of(await client.post("/api/generate", json=body))
    whole = await (await client.post("/api/generate", json=body | {"stream": False})).json()
    assert "".join(line["response"] for line in streamed) == whole["response"]
    assert whole["done_reason"] == "stop" and whole["eval_count"] == 24 == len(streamed) - 1
    other = await (await client.post("/api/generate", json=body | {"prompt": "else", "stream": False})).json()
    assert other["response"] != whole["response"]


async def test_chat_answers_as_the_assistant_with_the_name_the_client_used(sim):
    _, client = await sim()
    messages = [{"role": "user", "content": "hi"}]
    resp = await client.post("/api/chat", json={"model": "A:1B", "messages": messages, "stream": False})
    assert resp.headers["Content-Type"] == "application/json"
    body = await resp.json()
    assert body["model"] == "A:1B" and body["message"]["role"] == "assistant" and body["message"]["content"]
    assert "context" not in body and all(k in body for k in FINAL_NS + ("prompt_eval_count", "eval_count"))
    lines = await lines_of(await client.post("/api/chat", json={"model": "a:1b", "messages": messages}))
    assert "".join(x["message"]["content"] for x in lines) == body["message"]["content"]


async def test_headers_wait_until_the_model_is_loaded_and_the_first_token_is_ready(sim):
    worker, client = await sim(load_s_per_gib=0.2, tokens_per_s=10)
    began = time.monotonic()
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "x", "options": {"num_predict": 2}})
    waited = time.monotonic() - began
    assert waited >= 0.2 + 0.1 - 0.02 and "a:1b" in worker.loaded
    assert len(await lines_of(resp)) == 3


async def test_format_json_or_a_schema_makes_the_whole_answer_json(sim):
    _, client = await sim()
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "people": {"type": "integer"}}}
    for fmt, keys in (("json", {"answer"}), (schema, {"city", "people"})):
        body = {"model": "a:1b", "prompt": "where", "format": fmt, "options": {"num_predict": 6}}
        lines = await lines_of(await client.post("/api/generate", json=body))
        answer = orjson.loads("".join(line["response"] for line in lines))
        assert set(answer) == keys and lines[-1]["eval_count"] == 6
    assert isinstance(answer["people"], int) and answer["city"]


async def test_offered_tools_get_a_call_and_a_tool_result_gets_text(sim):
    _, client = await sim()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}},
             {"type": "function", "function": {"name": "other"}}]
    messages = [{"role": "user", "content": "weather in Paris?"}]
    body = {"model": "a:1b", "messages": messages, "tools": tools, "stream": False}
    called = await (await client.post("/api/chat", json=body)).json()
    assert called["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {}}}]
    assert called["message"]["content"] == "" and called["done_reason"] == "stop"
    streamed = await lines_of(await client.post("/api/chat", json=body | {"stream": True}))
    assert streamed[0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather" and streamed[-1]["done"]
    messages += [called["message"], {"role": "tool", "content": "sunny"}]
    answered = await (await client.post("/api/chat", json=body | {"messages": messages})).json()
    assert answered["message"]["content"] and "tool_calls" not in answered["message"]


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"prompt": "x"}, 400, "model is required"),
    ({"model": "missing:1b", "prompt": "x"}, 404, 'model "missing:1b" not found, try pulling it first'),
    ({"model": "a", "prompt": "x"}, 404, 'model "a" not found, try pulling it first'),
])
async def test_bad_requests_get_ollamas_errors(sim, body, status, error):
    _, client = await sim()
    for path in ("/api/generate", "/api/chat", "/api/embed"):
        resp = await client.post(path, json=body)
        assert (resp.status, await resp.json()) == (status, {"error": error})


async def test_names_match_whatever_the_case_or_registry_prefix(sim):
    _, client = await sim()
    for name in ("a:1b", "A:1B", "registry.ollama.ai/library/a:1b"):
        resp = await client.post("/api/generate", json={"model": name, "prompt": "x", "stream": False})
        assert resp.status == 200 and (await resp.json())["model"] == name


async def test_a_body_that_is_not_json_is_a_400(sim):
    _, client = await sim()
    for data in (b"{oops", b"", b"[1]"):
        resp = await client.post("/api/chat", data=data)
        assert resp.status == 400 and (await resp.json())["error"]


async def test_embeddings_are_deterministic_unit_vectors(sim):
    worker, client = await sim()
    one = await (await client.post("/api/embed", json={"model": "nomic-embed-text", "input": ["x", "y"]})).json()
    two = await (await client.post("/api/embed", json={"model": "nomic-embed-text", "input": "x"})).json()
    assert len(one["embeddings"]) == 2 and len(one["embeddings"][0]) == 768, "nomic-embed-text's real width"
    assert one["embeddings"][0] == two["embeddings"][0] != one["embeddings"][1]
    assert abs(sum(v * v for v in one["embeddings"][0]) - 1.0) < 1e-9
    assert one["model"] == "nomic-embed-text" and one["prompt_eval_count"] == 2 and one["load_duration"] > 0
    short = await (await client.post("/api/embed", json={"model": "nomic-embed-text", "input": "x",
                                                         "dimensions": 8})).json()
    assert len(short["embeddings"][0]) == 8 and abs(sum(v * v for v in short["embeddings"][0]) - 1) < 1e-9
    legacy = await (await client.post("/api/embeddings", json={"model": "nomic-embed-text", "prompt": "x"})).json()
    assert legacy == {"embedding": one["embeddings"][0]}
    resp = await client.post("/api/embed", json={"model": "nomic-embed-text", "input": [1]})
    assert resp.status == 400 and (await resp.json()) == {"error": "invalid input type"}


async def test_an_empty_embed_input_answers_no_vectors_but_loads_the_model(sim):
    worker, client = await sim()
    body = await (await client.post("/api/embed", json={"model": "nomic-embed-text", "input": []})).json()
    assert body == {"model": "nomic-embed-text", "embeddings": []} and "nomic-embed-text:latest" in worker.loaded


async def test_root_version_tags_and_show_look_like_ollama(sim):
    _, client = await sim(version="0.9.1")
    root = await client.get("/")
    assert root.status == 200 and await root.text() == "Ollama is running"
    assert (await client.head("/")).status == 200
    assert await (await client.get("/api/version")).json() == {"version": "0.9.1"}
    tags = (await (await client.get("/api/tags")).json())["models"]
    entry = next(m for m in tags if m["name"] == "a:1b")
    assert entry["model"] == "a:1b" and entry["size"] == GIB and len(entry["digest"]) == 64
    assert entry["details"] == {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                "parameter_size": "1B", "quantization_level": "Q4_K_M"}
    assert datetime.fromisoformat(entry["modified_at"]).utcoffset() is not None
    show = await (await client.post("/api/show", json={"name": "a:1b"})).json()
    assert show["capabilities"] == ["completion", "tools"] and show["details"] == entry["details"]
    assert show["model_info"]["general.architecture"] == "llama"
    assert show["model_info"]["general.parameter_count"] == 1_000_000_000
    assert show["model_info"]["llama.context_length"] == 4096 and show["model_info"]["llama.embedding_length"] == 384
    embed = await (await client.post("/api/show", json={"model": "nomic-embed-text"})).json()
    assert embed["capabilities"] == ["embedding"]
    resp = await client.post("/api/show", json={"model": "nope"})
    assert (resp.status, await resp.json()) == (404, {"error": "model 'nope' not found"})


async def test_unknown_paths_and_wrong_methods_answer_as_gos_mux(sim):
    _, client = await sim()
    resp = await client.get("/nope")
    assert resp.status == 404 and await resp.text() == "404 page not found"
    assert (await client.get("/api/generate")).status == 405
    assert (await client.post("/api/tags")).status == 405
