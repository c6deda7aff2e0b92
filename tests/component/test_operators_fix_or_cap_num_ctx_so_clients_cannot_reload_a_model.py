"""A client's num_ctx decides the context of the copy everybody uses: one that sends another value
makes the worker reload it. Per model, `[models."X"]` fixes it (`request_num_ctx`), caps it
(`max_num_ctx`) or strips the other load-time options (`strip_load_options`) before the worker sees
the request, so clients cannot make it reload; explain shows what a request's options become."""

from tests.conftest import WorkerSpec

ADMIN_TOKEN = "admin-token-0123456789abcdef"
MODELS = "llama3.2:1b=1.3GiB,qwen2:0.5b=0.5GiB"
RULES = """
[models."llama3.2:1b"]
max_num_ctx = 2048
strip_load_options = true
[models."qwen2:0.5b"]
request_num_ctx = 1024
"""


async def generate(fleet, model: str, **options) -> dict:
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": 2, **options}}
    async with fleet.post("/api/generate", body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_cap_keeps_a_larger_num_ctx_from_reloading_the_model(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=RULES)
    sim = fleet.workers["gpu0"]
    await generate(fleet, "llama3.2:1b", num_ctx=2048)
    assert (await generate(fleet, "llama3.2:1b", num_ctx=4096))["load_duration"] == 0  # capped to 2048
    assert (await generate(fleet, "llama3.2:1b", num_ctx=2048, num_batch=64, num_thread=3))["load_duration"] == 0
    assert sim.stats.loads == ["llama3.2:1b"] and sim.loaded["llama3.2:1b"].runner.num_ctx == 2048


async def test_without_a_rule_the_same_clients_reload_the_model(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS))
    await generate(fleet, "llama3.2:1b", num_ctx=2048)
    assert (await generate(fleet, "llama3.2:1b", num_ctx=4096))["load_duration"] > 0
    assert fleet.workers["gpu0"].stats.loads == ["llama3.2:1b", "llama3.2:1b"]


async def test_a_fixed_num_ctx_is_what_every_request_runs_with_whatever_the_client_sent(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=RULES)
    sim = fleet.workers["gpu0"]
    await generate(fleet, "qwen2:0.5b")
    await generate(fleet, "qwen2:0.5b", num_ctx=4096)
    assert sim.stats.loads == ["qwen2:0.5b"] and sim.loaded["qwen2:0.5b"].runner.num_ctx == 1024


async def test_explain_shows_the_options_a_request_is_routed_by(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=RULES, admin_token=ADMIN_TOKEN)
    await generate(fleet, "llama3.2:1b", num_ctx=1024)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"model": "llama3.2:1b", "options": {"num_ctx": 8192, "num_gpu": 3}}
    async with fleet.http.post(fleet.url + "/admin/explain", json=body, headers=headers) as resp:
        assert resp.status == 200
        explained = await resp.json()
    assert explained["load_options"] == {"sent_num_ctx": 8192, "rules": ["strip_load_options", "max_num_ctx"],
                                         "routed_by": {"num_ctx": 2048}}
    gpu0 = explained["workers"]["gpu0"]
    assert gpu0["loaded_with"] == {"num_ctx": 1024} and gpu0["serves_options"] is False
    assert explained["candidates"][0] == {"worker": "gpu0", "reason": "options", "loads": True, "evicts": []}
