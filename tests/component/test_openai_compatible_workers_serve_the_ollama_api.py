"""kind = "openai" workers (here the simulated worker's /v1 API, as Ollama serves it) behind
the Ollama front API: requests and answers are translated both ways."""

import ollama
import orjson
import pytest

from tests.conftest import WorkerSpec

MODELS = "llama3.2:1b=1.3GiB,all-minilm=0.05GiB"


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("oai0", MODELS, kind="openai"))


async def test_chat_streams_as_ndjson_with_final_fields(fleet):
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}}
    async with fleet.post("/api/chat", body) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [orjson.loads(x) for x in (await resp.read()).splitlines() if x.strip()]
    assert [line["done"] for line in lines] == [False] * 4 + [True]
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 4
    assert "".join(line["message"]["content"] for line in lines) != ""


async def test_the_official_client_works_against_an_openai_worker(fleet):
    client = ollama.AsyncClient(host=fleet.url)
    assert {m.model for m in (await client.list()).models} == {"llama3.2:1b", "all-minilm:latest"}
    answer = await client.generate(model="llama3.2:1b", prompt="why", options={"num_predict": 3})
    assert answer.done and answer.response and answer.eval_count == 3
    parts = [p async for p in await client.chat(model="llama3.2:1b", stream=True,
                                                 messages=[{"role": "user", "content": "x"}])]
    assert parts[-1].done and parts[-1].done_reason == "stop"
    embedded = await client.embed(model="all-minilm", input=["a", "b"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 384
    assert len((await client.embeddings(model="all-minilm", prompt="a")).embedding) == 384
    shown = await client.show("llama3.2:1b")
    assert "completion" in shown.capabilities
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="missing", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404


async def test_a_request_the_kind_cannot_honour_is_a_clear_400(fleet):
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "template": "{{ .Prompt }}"}) as r:
        assert r.status == 400 and "custom template" in (await r.json())["error"]


async def test_a_mixed_fleet_serves_one_model_from_both_kinds(start_fleet):
    fleet = await start_fleet(WorkerSpec("ollama0", MODELS), WorkerSpec("oai0", MODELS, kind="openai"))
    seen = set()
    for i in range(6):
        body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": f"q{i}"}], "stream": False}
        async with fleet.post("/api/chat", body) as resp:
            assert resp.status == 200 and (await resp.json())["done"] is True
            seen.add(resp.headers["X-Beacon-Worker"])
    assert "oai0" in seen, "an always-resident OpenAI worker takes traffic beside a cold Ollama worker"
    fleet.workers["oai0"].set_mode("error")
    body = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "x"}], "stream": False}
    for _ in range(3):
        async with fleet.post("/api/chat", body) as resp:
            assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "ollama0"
