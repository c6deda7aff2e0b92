"""A key with `manage = true` and a `models` list pulls, pushes, creates, copies and deletes only
models on its list: the copy source and destination, a create's `from` and every name a worker
reads are judged; refusals are 403 in Ollama's shape, come before any lookup (a key cannot learn
whether a model it may not use exists) and reach no worker. Blobs stay open (content-addressed)."""

import hashlib

import orjson
from aiohttp import web

from gateway.access import hash_key
from tests.conftest import WorkerSpec

OPS = "ops-key-0123456789abcdef"
CLIENTS = f"""
[[clients]]
name = "ops"
key_sha256 = "{hash_key(OPS)}"
models = ["llama3.2:*"]
manage = true
"""
AUTH = {"Authorization": f"Bearer {OPS}"}
MODELS = "llama3.2:1b=1.3GiB,qwen2:0.5b=0.5GiB"


def manage_calls(worker) -> dict:
    return {p: n for p, n in worker.stats.requests.items() if p in ("/api/pull", "/api/push", "/api/create",
                                                                     "/api/copy", "/api/delete")}


async def refused(fleet, method: str, path: str, body: dict) -> str:
    async with fleet.http.request(method, fleet.url + path, json=body, headers=AUTH) as resp:
        assert resp.status == 403, (path, body, resp.status)
        return (await resp.json())["error"]


async def test_every_model_name_a_management_call_touches_is_judged(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=CLIENTS)
    worker = fleet.workers["gpu0"]
    cases = [("POST", "/api/pull", {"model": "qwen2.5:0.5b", "stream": False}),
             ("POST", "/api/push", {"model": "qwen2:0.5b", "stream": False}),
             ("POST", "/api/create", {"model": "qwen2:mine", "from": "llama3.2:1b", "stream": False}),
             ("POST", "/api/create", {"model": "llama3.2:mine", "from": "qwen2:0.5b", "stream": False}),
             ("POST", "/api/copy", {"source": "qwen2:0.5b", "destination": "llama3.2:stolen"}),
             ("POST", "/api/copy", {"source": "llama3.2:1b", "destination": "qwen2:0.5b"}),
             ("DELETE", "/api/delete", {"model": "qwen2:0.5b"})]
    for method, path, body in cases:
        error = await refused(fleet, method, path, body)
        assert error.startswith("client 'ops' may not use model 'qwen2"), error
    assert await refused(fleet, "DELETE", "/api/delete", {"model": "secret:70b"}) == \
        "client 'ops' may not use model 'secret:70b'", "403, not 404: existence is not disclosed"
    assert manage_calls(worker) == {}, "no refused call reached a worker"
    assert set(worker.disk) == {"llama3.2:1b", "qwen2:0.5b"}


async def test_the_models_on_its_list_are_managed_as_before(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=CLIENTS)
    async with fleet.post("/api/pull", {"model": "llama3.2:3b", "stream": False}, headers=AUTH) as resp:
        assert resp.status == 200
    async with fleet.post("/api/copy", {"source": "llama3.2:1b", "destination": "llama3.2:mine"},
                          headers=AUTH) as resp:
        assert resp.status == 200
    async with fleet.post("/api/create", {"model": "llama3.2:made", "from": "llama3.2:mine", "stream": False},
                          headers=AUTH) as resp:
        assert resp.status == 200
    async with fleet.http.delete(fleet.url + "/api/delete", json={"model": "llama3.2:mine"}, headers=AUTH) as resp:
        assert resp.status == 200
    assert set(fleet.workers["gpu0"].disk) == {"llama3.2:1b", "llama3.2:3b", "llama3.2:made", "qwen2:0.5b"}
    data = b"GGUF" + bytes(range(256)) * 16
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with fleet.post(f"/api/blobs/{digest}", data=data, headers=AUTH) as resp:
        assert resp.status == 201, "blobs are content-addressed: no model name to judge"


def go_field(data: dict, field: str):
    """What Go's encoding/json reads for `field`: the last key that matches it case-insensitively."""
    value = None
    for key, item in data.items():
        if key.casefold() == field:
            value = item
    return value


async def test_a_worker_reads_exactly_the_names_that_were_judged(start_fleet, aiohttp_server):
    """Against a worker that decodes like Ollama's Go server, where `Model` or `FROM` after the
    judged key would win: such keys are refused, and what is forwarded is the judged names only."""
    seen: list[dict] = []

    async def progress(request: web.Request) -> web.Response:
        data = orjson.loads(await request.read())
        seen.append({f: go_field(data, f) for f in ("model", "name", "from")})
        return web.Response(body=b'{"status":"success"}\n', content_type="application/x-ndjson")

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "llama3.2:1b", "size": 1}]} if request.path == "/api/tags"
                                 else {"models": []} if request.path == "/api/ps" else {"version": "0.12.6"})

    app = web.Application()
    for path in ("/api/tags", "/api/ps", "/api/version"):
        app.router.add_get(path, listing)
    for path in ("/api/pull", "/api/push", "/api/create"):
        app.router.add_post(path, progress)
    go = await aiohttp_server(app)
    fleet = await start_fleet(WorkerSpec("go0", url=str(go.make_url("")).rstrip("/")),
                              config_extra=CLIENTS + '[models."llama3.2:1b"]\naliases = ["house"]\n')
    for path, body in [("/api/pull", {"model": "llama3.2:1b", "Model": "qwen2:0.5b"}),
                       ("/api/push", {"model": "llama3.2:1b", "NAME": "qwen2:0.5b"}),
                       ("/api/create", {"model": "llama3.2:x", "from": "llama3.2:1b", "FROM": "qwen2:0.5b"}),
                       ("/api/create", {"model": "llama3.2:x", "from": "llama3.2:1b", "\u017ftream": True})]:
        async with fleet.post(path, body, headers=AUTH) as resp:
            assert resp.status == 400 and "spell it exactly" in (await resp.json())["error"], (path, body)
    assert seen == [], "a refused body reaches no worker"
    for path, body in [("/api/pull", {"model": "llama3.2:1b", "name": "qwen2:0.5b", "stream": False}),
                       ("/api/create", {"model": "llama3.2:x", "from": "house", "stream": False})]:
        async with fleet.post(path, body, headers=AUTH) as resp:
            assert resp.status == 200 and await resp.json() == {"status": "success"}, path
    assert seen == [{"model": "llama3.2:1b", "name": None, "from": None},
                    {"model": "llama3.2:x", "name": None, "from": "llama3.2:1b"}], "the judged names, canonical"
