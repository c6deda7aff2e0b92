import orjson
from aiohttp import web

from tests.component.fake_workers import FakeWorker
from tests.conftest import WorkerSpec


async def progress(fleet, path, body):
    async with fleet.post(path, body) as resp:
        assert resp.status == 200
        return [orjson.loads(x) for x in (await resp.read()).splitlines() if x.strip()]


async def test_pull_goes_to_every_gpu_worker_and_succeeds_once_all_did(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("cpu0", tier="cpu"))
    lines = await progress(fleet, "/api/pull", {"model": "qwen2.5:0.5b"})
    assert lines[-1] == {"status": "success"}
    assert {line["worker"] for line in lines[:-1]} == {"gpu0", "gpu1"}
    assert sum(line == {"status": "success"} for line in lines) == 1
    async with fleet.get("/api/tags") as resp:
        tags = {m["name"]: m for m in (await resp.json())["models"]}
    assert sorted(tags["qwen2.5:0.5b"]["workers"]) == ["gpu0", "gpu1"], "tags are fresh right after a pull"


async def test_pull_to_config_sends_a_model_to_the_cpu_tier_too(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("cpu0", tier="cpu"),
                              config_extra='[models."qwen2.5:0.5b"]\npull_to = ["gpu", "cpu"]\n')
    async with fleet.post("/api/pull", {"model": "qwen2.5:0.5b", "stream": False}) as resp:
        assert resp.status == 200 and await resp.json() == {"status": "success"}
    assert all("qwen2.5:0.5b" in w.models for w in fleet.gateway.holder.current.workers.values())


async def test_pull_failing_on_one_worker_ends_with_an_error_naming_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    fleet.workers["gpu1"].set_mode("error")
    lines = await progress(fleet, "/api/pull", {"model": "qwen2.5:0.5b"})
    assert "gpu1" in lines[-1]["error"] and "gpu0" not in lines[-1]["error"]
    async with fleet.post("/api/pull", {"model": "qwen2.5:0.5b", "stream": False}) as resp:
        assert resp.status == 502 and "gpu1" in (await resp.json())["error"]


async def test_a_pull_failing_on_every_worker_answers_as_ollama_does(start_fleet):
    """Ollama answers a failed pull 500 {"error"} when not streamed, and ends a begun stream with an
    error line (200 on the wire); a failure before the first line is a 500 too."""
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    lines = await progress(fleet, "/api/pull", {"model": "no-such-model:1b"})
    assert {line["worker"] for line in lines[:-1]} == {"gpu0", "gpu1"}
    assert "failed on 2 of 2 workers" in lines[-1]["error"] and "file does not exist" in lines[-1]["error"]
    async with fleet.post("/api/pull", {"model": "no-such-model:1b", "stream": False}) as resp:
        assert resp.status == 500 and resp.content_type == "application/json"
        assert "file does not exist" in (await resp.json())["error"]
    await fleet.stop_worker("gpu0")
    await fleet.stop_worker("gpu1")
    async with fleet.post("/api/pull", {"model": "qwen2.5:0.5b"}) as resp:
        assert resp.status == 500 and resp.content_type == "application/json", "no line went out before it failed"
        error = (await resp.json())["error"]
    assert "gpu0" in error and "gpu1" in error
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    requests = [line for line in text.splitlines() if line.startswith("beacon_requests_total{")]
    assert requests == ['beacon_requests_total{endpoint="pull",model="other",outcome="upstream_error",'
                        'worker="several"} 3.0'], "each of the three: the workers failed, not the gateway"


async def test_a_pull_every_worker_refuses_alike_passes_their_status_on(start_fleet, aiohttp_server):
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "insecure protocol http"}, status=400)

    specs = []
    for name in ("gpu0", "gpu1"):
        fake = FakeWorker()
        fake.routes["/api/pull"] = refuse
        specs.append(WorkerSpec(name, url=str((await aiohttp_server(fake.app())).make_url("")).rstrip("/")))
    fleet = await start_fleet(*specs)
    for stream in (True, False):
        async with fleet.post("/api/pull", {"model": "llama3.2:1b", "stream": stream}) as resp:
            assert resp.status == 400 and resp.content_type == "application/json", stream
            assert "failed on 2 of 2 workers" in (error := (await resp.json())["error"]) and "insecure" in error
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert 'beacon_requests_total{endpoint="pull",model="llama3.2:1b",outcome="client_error",worker="several"} 2.0' \
        in text, "a refusal the workers made, passed on"


async def test_copy_then_delete_reach_every_worker_holding_the_model(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("gpu2", "other:1b=1GiB"))
    async with fleet.post("/api/copy", {"source": "llama3.2:1b", "destination": "mine:latest"}) as resp:
        assert resp.status == 200
    holders = {w.name for w in fleet.gateway.holder.current.workers.values() if "mine:latest" in w.models}
    assert holders == {"gpu0", "gpu1"}
    async with fleet.http.delete(fleet.url + "/api/delete", json={"model": "mine"}) as resp:
        assert resp.status == 200
    assert not any("mine:latest" in w.models for w in fleet.gateway.holder.current.workers.values())
    async with fleet.http.delete(fleet.url + "/api/delete", json={"model": "mine"}) as resp:
        assert resp.status == 404 and "not found" in (await resp.json())["error"]
    async with fleet.post("/api/copy", {"source": "nope", "destination": "x"}) as resp:
        assert resp.status == 404


async def test_blobs_are_uploaded_to_every_worker_and_create_uses_them(start_fleet):
    import hashlib

    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    data = b"GGUF" + bytes(range(256)) * 64
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with fleet.http.head(f"{fleet.url}/api/blobs/{digest}") as resp:
        assert resp.status == 404
    async with fleet.post(f"/api/blobs/{digest}", data=data) as resp:
        assert resp.status == 201
    async with fleet.http.head(f"{fleet.url}/api/blobs/{digest}") as resp:
        assert resp.status == 200
    async with fleet.post(f"/api/blobs/{digest}", data=b"other bytes") as resp:
        assert resp.status == 400
    async with fleet.post("/api/blobs/sha256:nothex", data=b"x") as resp:
        assert resp.status == 400 and "invalid digest" in (await resp.json())["error"]
    lines = await progress(fleet, "/api/create", {"model": "made:latest", "files": {"m.gguf": digest}})
    assert lines[-1] == {"status": "success"}
    assert all("made:latest" in w.models for w in fleet.gateway.holder.current.workers.values())
