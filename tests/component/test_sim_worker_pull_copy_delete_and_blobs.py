"""The simulated worker manages models as Ollama does: pull and push with NDJSON progress, create
from a model or uploaded blobs, copy, delete (which unloads), and content-addressed blobs."""

import asyncio
import hashlib
from functools import partial

import orjson
import pytest

from local_workers.sim import SimModel

GIB = 1024**3
NO_MANIFEST = {"error": "pull model manifest: file does not exist"}


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB", pull_s_per_gib=0.01)


async def post_lines(client, path: str, body: dict) -> tuple[int, list[dict]]:
    resp = await client.post(path, json=body)
    return resp.status, [orjson.loads(line) for line in (await resp.read()).splitlines()]


async def tag_names(client) -> set[str]:
    return {m["name"] for m in (await (await client.get("/api/tags")).json())["models"]}


async def test_pull_streams_progress_then_the_model_is_on_disk(sim):
    worker, client = await sim()
    status, lines = await post_lines(client, "/api/pull", {"model": "llama3.2:1b"})
    assert status == 200 and lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    layer = [x for x in lines if x.get("digest") == worker.registry["llama3.2:1b"].digest]
    assert [x["completed"] for x in layer] == sorted(x["completed"] for x in layer)
    assert layer[-1]["completed"] == layer[-1]["total"] == int(1.3 * GIB)
    assert layer[0]["status"] == "pulling " + layer[0]["digest"][7:19]
    statuses = [x["status"] for x in lines]
    assert statuses.index("verifying sha256 digest") < statuses.index("writing manifest") < len(lines) - 1
    assert "llama3.2:1b" in await tag_names(client)
    resp = await client.post("/api/generate", json={"model": "llama3.2:1b", "prompt": "x", "stream": False})
    assert resp.status == 200


async def test_pull_without_streaming_answers_once(sim):
    _, client = await sim()
    resp = await client.post("/api/pull", json={"name": "qwen2.5:0.5b", "stream": False})
    assert (resp.status, await resp.json()) == (200, {"status": "success"})
    assert "qwen2.5:0.5b" in await tag_names(client)


async def test_pulling_a_name_no_registry_has_fails_as_ollama_does(sim):
    _, client = await sim()
    status, lines = await post_lines(client, "/api/pull", {"model": "no-such-model"})
    assert status == 200 and lines == [{"status": "pulling manifest"}, NO_MANIFEST]
    resp = await client.post("/api/pull", json={"model": "no-such-model", "stream": False})
    assert (resp.status, await resp.json()) == (500, NO_MANIFEST)
    assert "no-such-model:latest" not in await tag_names(client)


async def test_a_worker_given_its_own_registry_pulls_only_from_it(sim):
    _, client = await sim(registry={"house:1b": SimModel("house:1b", GIB // 4)})
    assert (await client.post("/api/pull", json={"model": "house:1b", "stream": False})).status == 200
    assert (await client.post("/api/pull", json={"model": "llama3.2:1b", "stream": False})).status == 500


async def test_push_shows_progress_and_a_missing_model_fails(sim):
    _, client = await sim()
    status, lines = await post_lines(client, "/api/push", {"model": "a:1b"})
    assert lines[0] == {"status": "retrieving manifest"} and lines[-1] == {"status": "success"}
    assert {"status": "pushing manifest"} in lines and any(x["status"].startswith("pushing ") for x in lines[1:-2])
    status, lines = await post_lines(client, "/api/push", {"model": "gone:1b"})
    assert lines[:2] == [{"status": "retrieving manifest"}, {"status": "couldn't retrieve manifest"}]
    assert "gone/1b: no such file or directory" in lines[-1]["error"]
    resp = await client.post("/api/push", json={"model": "gone:1b", "stream": False})
    assert resp.status == 500


async def test_create_from_a_model_reuses_its_layers_and_adds_new_ones(sim):
    worker, client = await sim()
    body = {"model": "mine", "from": "a:1b", "system": "be brief", "quantize": "q8_0"}
    status, lines = await post_lines(client, "/api/create", body)
    assert lines[0] == {"status": f"using existing layer {worker.find('a:1b').digest}"}
    assert any(x["status"].startswith("creating new layer sha256:") for x in lines)
    assert lines[-2:] == [{"status": "writing manifest"}, {"status": "success"}]
    made = worker.find("mine:latest")
    assert made.size_bytes == GIB and made.quantization_level == "Q8_0"
    assert "mine:latest" in await tag_names(client)


async def test_create_from_a_missing_model_pulls_it_or_fails(sim):
    worker, client = await sim()
    status, lines = await post_lines(client, "/api/create", {"model": "x", "from": "qwen2.5:0.5b"})
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    assert worker.find("qwen2.5:0.5b") and worker.find("x")
    resp = await client.post("/api/create", json={"model": "y", "from": "nowhere:1b", "stream": False})
    assert (resp.status, await resp.json()) == (500, NO_MANIFEST)
    resp = await client.post("/api/create", json={"model": "y", "stream": False})
    assert (resp.status, await resp.json()) == (400, {"error": "neither 'from' or 'files' was specified"})


async def test_blobs_are_stored_by_digest_and_create_can_use_them(sim):
    worker, client = await sim()
    data = b"GGUF" + bytes(range(256)) * 16
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert (await client.head(f"/api/blobs/{digest}")).status == 404
    assert (await client.post(f"/api/blobs/{digest}", data=data)).status == 201
    assert (await client.head(f"/api/blobs/{digest}")).status == 200
    assert (await client.post(f"/api/blobs/{digest}", data=data)).status == 200, "already stored"
    resp = await client.post(f"/api/blobs/{digest}", data=b"other bytes")
    assert resp.status == 400 and (await resp.json())["error"].startswith("digest mismatch")
    for bad in ("sha256:nothex", "md5:" + "0" * 64):
        resp = await client.post(f"/api/blobs/{bad}", data=b"x")
        assert (resp.status, await resp.json()) == (400, {"error": "invalid digest format"})
    status, lines = await post_lines(client, "/api/create", {"model": "made", "files": {"m.gguf": digest}})
    assert {"status": f"using existing layer {digest}"} in lines and lines[-1] == {"status": "success"}
    assert worker.find("made").size_bytes == len(data)
    missing = "sha256:" + "ab" * 32
    resp = await client.post("/api/create", json={"model": "no", "files": {"m.gguf": missing}, "stream": False})
    assert resp.status == 500 and "no such file" in (await resp.json())["error"]


async def test_copy_makes_a_second_name_for_the_same_model(sim):
    worker, client = await sim()
    resp = await client.post("/api/copy", json={"source": "A:1B", "destination": "b:latest"})
    assert resp.status == 200 and await resp.read() == b""
    assert {"a:1b", "b:latest"} <= await tag_names(client) and worker.find("b").size_bytes == GIB
    resp = await client.post("/api/copy", json={"source": "gone:1b", "destination": "c"})
    assert (resp.status, await resp.json()) == (404, {"error": 'model "gone:1b" not found'})


async def test_delete_removes_the_model_and_unloads_it_if_resident(sim):
    worker, client = await sim()
    await client.post("/api/generate", json={"model": "a:1b", "prompt": "x", "stream": False})
    assert "a:1b" in worker.loaded
    resp = await client.delete("/api/delete", json={"model": "a:1b"})
    assert resp.status == 200 and await resp.read() == b""
    assert "a:1b" not in worker.loaded and "a:1b" not in await tag_names(client)
    assert (await (await client.get("/api/ps")).json())["models"] == []
    resp = await client.delete("/api/delete", json={"model": "a:1b"})
    assert (resp.status, await resp.json()) == (404, {"error": "model 'a:1b' not found"})
    resp = await client.post("/api/generate", json={"model": "a:1b", "prompt": "x"})
    assert resp.status == 404


async def test_deleting_a_busy_model_lets_its_answer_finish_and_turns_its_queue_away(sim):
    worker, client = await sim(tokens_per_s=100, num_parallel=1)
    body = {"model": "a:1b", "prompt": "x", "stream": False, "options": {"num_predict": 15}}
    running = asyncio.create_task(client.post("/api/generate", json=body))
    while not worker.active:
        await asyncio.sleep(0.005)
    queued = asyncio.create_task(client.post("/api/generate", json=body))
    while not worker.queued:
        await asyncio.sleep(0.005)
    assert (await client.delete("/api/delete", json={"model": "a:1b"})).status == 200
    assert "a:1b" in worker.loaded, "still answering"
    assert (await running).status == 200 and (await queued).status == 404
    assert "a:1b" not in worker.loaded and worker.stats.unloads == ["a:1b"] and worker.stats.evictions == []
