"""The official `ollama` Python client, pointed at the gateway as OLLAMA_HOST, works unchanged."""

import ollama
import pytest

from tests.conftest import WorkerSpec

MODELS = "llama3.2:1b=1.3GiB,all-minilm:latest=0.045GiB"


@pytest.fixture
async def client(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", MODELS), WorkerSpec("gpu1", MODELS),
                              WorkerSpec("cpu0", "llama3.2:1b=1.3GiB", tier="cpu"))
    client = ollama.AsyncClient(host=fleet.url)
    client.fleet = fleet
    return client


async def test_list_shows_every_model(client):
    listed = await client.list()
    assert {m.model for m in listed.models} == {"llama3.2:1b", "all-minilm:latest"}
    assert all(m.size and m.digest and m.details.format == "gguf" for m in listed.models)


async def test_ps_after_generate_shows_the_model_loaded(client):
    await client.generate(model="llama3.2:1b", prompt="hello", options={"num_predict": 2})
    running = await client.ps()
    assert [m.model for m in running.models] == ["llama3.2:1b"]
    assert running.models[0].size_vram > 0 and running.models[0].expires_at is not None


async def test_show_describes_the_model(client):
    shown = await client.show("llama3.2:1b")
    assert shown.details.family and shown.modelinfo["general.architecture"] == "llama"
    assert "completion" in shown.capabilities


async def test_chat_whole_and_streamed(client):
    messages = [{"role": "user", "content": "why is the sky blue?"}]
    whole = await client.chat(model="llama3.2:1b", messages=messages, options={"num_predict": 4})
    assert whole.done and whole.message.role == "assistant" and whole.message.content
    assert whole.eval_count == 4 and whole.done_reason == "length"
    parts = [part async for part in await client.chat(model="llama3.2:1b", messages=messages, stream=True,
                                                         options={"num_predict": 4})]
    assert len(parts) == 5 and parts[-1].done and not parts[0].done
    assert "".join(p.message.content for p in parts) == whole.message.content, "same prompt, same tokens"


async def test_generate_whole_and_streamed(client):
    whole = await client.generate(model="llama3.2:1b", prompt="count", options={"num_predict": 3})
    assert whole.done and whole.response and whole.total_duration > 0
    parts = [p async for p in await client.generate(model="llama3.2:1b", prompt="count", stream=True,
                                                     options={"num_predict": 3})]
    assert parts[-1].done and "".join(p.response for p in parts) == whole.response


async def test_embed_and_legacy_embeddings(client):
    embedded = await client.embed(model="all-minilm", input=["first", "second"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) > 0
    legacy = await client.embeddings(model="all-minilm", prompt="first")
    assert len(legacy.embedding) == len(embedded.embeddings[0])


async def test_pull_streams_progress_and_ends_with_success(client):
    statuses = [p.status async for p in await client.pull("qwen2.5:0.5b", stream=True)]
    assert statuses[-1] == "success" and any(s.startswith("pulling") for s in statuses)
    assert (await client.pull("qwen2.5:0.5b")).status == "success"
    assert "qwen2.5:0.5b" in {m.model for m in (await client.list()).models}


async def test_a_pull_no_worker_can_do_raises_as_against_ollama(client):
    with pytest.raises(ollama.ResponseError) as info:
        await client.pull("no-such-model:1b")
    assert info.value.status_code == 500 and "file does not exist" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        [p async for p in await client.pull("no-such-model:1b", stream=True)]
    assert "file does not exist" in info.value.error


async def test_copy_and_delete(client):
    await client.copy("llama3.2:1b", "my-copy")
    assert "my-copy:latest" in {m.model for m in (await client.list()).models}
    await client.delete("my-copy")
    assert "my-copy:latest" not in {m.model for m in (await client.list()).models}


async def test_unknown_model_raises_response_error_404(client):
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="does-not-exist", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and "not found" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        await client.show("does-not-exist")
    assert info.value.status_code == 404
