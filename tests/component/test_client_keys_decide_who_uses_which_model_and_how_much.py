"""[[clients]]: with keys configured every front request needs one; each key has its models,
its management right, its concurrency and its request rate; refusals are clear and counted,
keys never reach workers or logs, and /metrics can sit behind its own token."""

import asyncio

from structlog.testing import capture_logs

from gateway.access import hash_key
from tests.conftest import WorkerSpec

APP, OPS, SLOW = "app-key-0123456789abcdef", "ops-key-0123456789abcdef", "slow-key-0123456789abcdef"
CLIENTS = f"""
[[clients]]
name = "app"
key_sha256 = "{hash_key(APP)}"
models = ["llama3.2:*"]
requests_per_minute = 4
[[clients]]
name = "ops"
key_sha256 = "{hash_key(OPS)}"
manage = true
[[clients]]
name = "slow"
key_sha256 = "{hash_key(SLOW)}"
max_concurrent = 1
"""
MODELS = "llama3.2:1b=1.3GiB,qwen2:0.5b=0.5GiB"


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def generate(fleet, key: str | None, model: str = "llama3.2:1b", **extra):
    async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False, **extra},
                          headers=auth(key) if key else {}) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_without_a_known_key_nothing_passes_and_the_answer_says_how_to_send_one(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=CLIENTS)
    for key in (None, "wrong-key-0123456789abcdef"):
        status, body, headers = await generate(fleet, key)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert body["error"] in ("an API key is required: send Authorization: Bearer <key>", "unknown API key")
    async with fleet.get("/api/tags") as resp:
        assert resp.status == 401
    async with fleet.get("/health") as resp:
        assert resp.status == 200, "on-call endpoints stay open"
    status, body, headers = await generate(fleet, OPS)
    assert status == 200 and body["done"] is True
    assert fleet.workers["gpu0"].stats.authorization == {}, "a client's key never reaches a worker"


async def test_a_key_uses_only_its_models_and_manages_only_when_allowed(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_extra=CLIENTS)
    assert (await generate(fleet, APP))[0] == 200
    status, body, _ = await generate(fleet, APP, model="qwen2:0.5b")
    assert status == 403 and body["error"] == "client 'app' may not use model 'qwen2:0.5b'"
    async with fleet.get("/api/tags", headers=auth(APP)) as resp:
        assert [m["name"] for m in (await resp.json())["models"]] == ["llama3.2:1b"], "listings show its models only"
    async with fleet.post("/api/pull", {"model": "llama3.2:1b", "stream": False}, headers=auth(APP)) as resp:
        assert resp.status == 403 and "may not manage models" in (await resp.json())["error"]
    async with fleet.post("/api/pull", {"model": "llama3.2:1b", "stream": False}, headers=auth(OPS)) as resp:
        assert resp.status == 200


async def test_a_key_over_its_rate_or_concurrency_gets_429_with_retry_after(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS, tokens_per_s=50), config_extra=CLIENTS)
    with capture_logs() as logs:
        statuses = [(await generate(fleet, APP, options={"num_predict": 1}))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    status, body, headers = await generate(fleet, APP)
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60 and "4 requests per minute" in body["error"]
    assert not any(APP in str(entry) for entry in logs), "keys are never logged"

    slow = asyncio.create_task(generate(fleet, SLOW, options={"num_predict": 40}))
    for _ in range(200):
        if fleet.gateway.inflight.get("gpu0"):
            break
        await asyncio.sleep(0.01)
    status, body, headers = await generate(fleet, SLOW, options={"num_predict": 1})
    assert status == 429 and headers["Retry-After"] == "1" and "max_concurrent 1" in body["error"]
    assert (await slow)[0] == 200
    assert (await generate(fleet, SLOW, options={"num_predict": 1}))[0] == 200, "the place is free again"
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert 'beacon_requests_total{endpoint="generate",model="none",outcome="rate_limited",worker="none"} 3.0' in text


async def test_metrics_behind_their_own_token_and_keys_take_effect_on_reload(start_fleet, tmp_path):
    path = tmp_path / "beacon.toml"
    fleet = await start_fleet(WorkerSpec("gpu0", models=MODELS), config_path=path,
                              settings={"metrics_token": "scrape-token"})
    async with fleet.get("/metrics") as resp:
        assert resp.status == 401
    async with fleet.get("/metrics", headers=auth("scrape-token")) as resp:
        assert resp.status == 200 and "beacon_worker_up" in await resp.text()
    assert (await generate(fleet, None))[0] == 200, "no [[clients]]: open"
    path.write_text(fleet.config_text + CLIENTS)
    assert (await fleet.gateway.reloader.reload("test")).result == "ok"
    assert (await generate(fleet, None))[0] == 401
    assert (await generate(fleet, OPS))[0] == 200
