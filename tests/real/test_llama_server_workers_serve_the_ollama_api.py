"""Real llama-server workers (single-model and router mode) behind the gateway, driven with the
official ollama client and raw HTTP: the Ollama API works unchanged on llama.cpp workers."""

import asyncio

import ollama
import orjson
import pytest

from tests.conftest import WorkerSpec

CHAT = [{"role": "user", "content": "why is the sky blue?"}]


@pytest.fixture
async def single(llama_server, tiny_models, start_fleet):
    server = await llama_server(model=tiny_models["tiny-a"], alias="tiny-a", parallel=2,
                                extra=("--embeddings", "--pooling", "mean"))
    fleet = await start_fleet(WorkerSpec("llama0", kind="llamacpp", url=server.url))
    fleet.server = server
    return fleet


async def test_the_official_client_suite_on_a_single_model_server(single):
    client = ollama.AsyncClient(host=single.url)
    assert [m.model for m in (await client.list()).models] == ["tiny-a:latest"]
    assert [m.model for m in (await client.ps()).models] == ["tiny-a:latest"]
    shown = await client.show("tiny-a")
    assert "im_start" in shown.template and "completion" in shown.capabilities
    whole = await client.chat(model="tiny-a", messages=CHAT, options={"num_predict": 5, "seed": 1})
    assert whole.done and whole.done_reason == "length" and whole.eval_count == 5 and whole.prompt_eval_count > 0
    assert whole.eval_duration > 0 and whole.total_duration > 0
    parts = [p async for p in await client.chat(model="tiny-a", messages=CHAT, stream=True,
                                                 options={"num_predict": 5})]
    assert parts[-1].done and parts[-1].eval_count == 5 and all(not p.done for p in parts[:-1])
    generated = await client.generate(model="tiny-a", prompt="the sky", options={"num_predict": 4})
    assert generated.done and generated.eval_count == 4
    raw = [p async for p in await client.generate(model="tiny-a", prompt="<s>the sky", raw=True, stream=True,
                                                   options={"num_predict": 4})]
    assert raw[-1].done and raw[-1].done_reason == "length" and raw[-1].eval_count == 4
    embedded = await client.embed(model="tiny-a", input=["one", "two"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 64
    assert len((await client.embeddings(model="tiny-a", prompt="one")).embedding) == 64
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="nope", messages=CHAT)
    assert info.value.status_code == 404


async def test_random_byte_tokens_stream_as_valid_ndjson(single):
    # A random-weight model emits arbitrary byte tokens: split and invalid UTF-8 must not corrupt the stream.
    body = {"model": "tiny-a", "prompt": "x", "raw": True, "options": {"num_predict": 64, "seed": 7}}
    async with single.post("/api/generate", body) as resp:
        assert resp.status == 200
        raw = await resp.read()
    lines = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 64
    assert all(isinstance(line.get("response"), str) for line in lines)


async def test_json_format_is_passed_as_a_grammar(single):
    body = {"model": "tiny-a", "prompt": "<s>answer:", "raw": True, "format": "json", "stream": False,
            "options": {"num_predict": 16}}
    async with single.post("/api/generate", body) as resp:
        assert resp.status == 200
        text = (await resp.json())["response"]
    assert text.lstrip().startswith(("{", "[")), text  # the grammar forces JSON even from random weights


async def test_a_worker_refusal_comes_back_in_ollamas_error_shape(single):
    # This tiny vocabulary makes llama-server's chat-path JSON grammar fail: a real 400 from the worker.
    body = {"model": "tiny-a", "messages": CHAT, "format": "json", "stream": False}
    async with single.post("/api/chat", body) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert isinstance(error, str) and "sampler" in error


async def test_slots_reported_by_the_server_feed_the_router(single):
    await single.probe()
    worker = single.gateway.holder.current.worker("llama0")
    assert worker.slots_total == 2 and worker.up


async def test_router_mode_loads_and_evicts_models_on_demand(llama_server, tiny_models, start_fleet):
    folder = tiny_models["tiny-a"].parent
    server = await llama_server(models_dir=folder, models_max=1, parallel=2)
    fleet = await start_fleet(WorkerSpec("router0", kind="llamacpp", url=server.url))
    client = ollama.AsyncClient(host=fleet.url)
    assert {m.model for m in (await client.list()).models} == {"tiny-a:latest", "tiny-b:latest"}
    for model in ("tiny-a", "tiny-b", "tiny-a"):
        answer = await client.generate(model=model, prompt="hi", options={"num_predict": 2})
        assert answer.done and answer.eval_count == 2
        await fleet.probe()
        assert [m.model for m in (await client.ps()).models] == [f"{model}:latest"], "--models-max 1 evicts"


async def test_the_warmer_loads_a_kept_warm_model_through_models_load(llama_server, tiny_models, start_fleet):
    server = await llama_server(models_dir=tiny_models["tiny-a"].parent, models_max=2)
    fleet = await start_fleet(WorkerSpec("router0", kind="llamacpp", url=server.url),
                              config_extra='[models."tiny-b"]\nkeep_warm = 1\n')
    assert fleet.gateway.holder.current.worker("router0").resident == {}
    planned = await fleet.gateway.warmer.step()
    assert [(w.model, w.reason) for w in planned] == [("tiny-b:latest", "keep_warm")]
    for _ in range(100):
        await fleet.probe()
        if "tiny-b:latest" in fleet.gateway.holder.current.worker("router0").resident:
            break
        await asyncio.sleep(0.05)
    assert set(fleet.gateway.holder.current.worker("router0").resident) == {"tiny-b:latest"}


async def test_a_mixed_fleet_of_ollama_and_llama_server_workers(llama_server, tiny_models, start_fleet):
    server = await llama_server(model=tiny_models["tiny-b"], alias="tiny-b")
    fleet = await start_fleet(WorkerSpec("ollama0", "llama3.2:1b=1.3GiB"),
                              WorkerSpec("llama0", kind="llamacpp", url=server.url))
    client = ollama.AsyncClient(host=fleet.url)
    assert {m.model for m in (await client.list()).models} == {"llama3.2:1b", "tiny-b:latest"}
    for model, worker in (("llama3.2:1b", "ollama0"), ("tiny-b", "llama0")):
        parts = [p async for p in await client.chat(model=model, messages=CHAT, stream=True,
                                                     options={"num_predict": 3})]
        assert parts[-1].done and parts[-1].eval_count == 3
        async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False,
                                                "options": {"num_predict": 2}}) as resp:
            assert resp.headers["X-Beacon-Worker"] == worker
    assert (await client.pull("qwen2.5:0.5b")).status == "success", "pull goes to the Ollama worker"
    assert {m.model for m in (await client.ps()).models} >= {"llama3.2:1b", "tiny-b:latest"}
