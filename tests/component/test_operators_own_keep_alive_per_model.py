"""A request's keep_alive decides how long a worker keeps a model for everybody using it, so the
operator owns it per model: `request_keep_alive` sets it, `min_keep_alive` raises it (clients
cannot unload the model), `max_keep_alive` caps it (-1 included). The worker sees the governed
value; models without a rule get what the client sent; explain shows the rule."""

from tests.conftest import WorkerSpec

ADMIN_TOKEN = "admin-token-0123456789abcdef"
MODELS = "llama3.2:1b=1.3GiB,qwen2:0.5b=0.5GiB,phi3:mini=2GiB"
RULES = """
[models."llama3.2:1b"]
min_keep_alive = "10m"
max_keep_alive = "1h"
[models."qwen2:0.5b"]
request_keep_alive = "30m"
"""


async def generate(fleet, model: str, keep_alive):
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": 2}, "keep_alive": keep_alive}
    async with fleet.post("/api/generate", body) as resp:
        assert resp.status == 200, await resp.text()


def kept_s(fleet, sim_name: str) -> float:
    """How long the worker was told to keep the model: its keep_alive in seconds (inf: forever)."""
    return fleet.workers["gpu0"].loaded[sim_name].keep_alive_s


async def test_the_worker_keeps_each_model_as_long_as_its_rule_says(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=RULES)
    await generate(fleet, "llama3.2:1b", 0)  # an unload with its answer: raised to 10 minutes
    assert kept_s(fleet, "llama3.2:1b") == 600
    await generate(fleet, "llama3.2:1b", -1)  # forever: capped to an hour
    assert kept_s(fleet, "llama3.2:1b") == 3600
    await generate(fleet, "llama3.2:1b", "20m")  # within the bounds: as sent
    assert kept_s(fleet, "llama3.2:1b") == 1200
    await generate(fleet, "qwen2:0.5b", "1m")  # set for every request, whatever the client says
    assert kept_s(fleet, "qwen2:0.5b") == 1800
    await generate(fleet, "phi3:mini", "90s")  # no rule: the client's own
    assert kept_s(fleet, "phi3:mini") == 90


async def test_explain_shows_what_a_keep_alive_becomes(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=RULES, admin_token=ADMIN_TOKEN)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"model": "llama3.2:1b", "keep_alive": 0}
    async with fleet.http.post(fleet.url + "/admin/explain", json=body, headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["keep_alive"] == {"sent": 0, "to_worker": "10m", "rule": "min_keep_alive"}
    async with fleet.http.post(fleet.url + "/admin/explain", json={"model": "phi3:mini", "keep_alive": "5m"},
                               headers=headers) as resp:
        assert (await resp.json())["keep_alive"] == {"sent": "5m", "to_worker": "5m", "rule": None}
