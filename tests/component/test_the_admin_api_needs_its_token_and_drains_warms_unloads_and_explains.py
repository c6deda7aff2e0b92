"""/admin/*: off without BEACON_ADMIN_TOKEN, 401 without the right bearer token, and with it:
drain and undrain a worker, reload, warm and unload a model, explain a routing decision."""

from tests.conftest import WorkerSpec

TOKEN = "s3cret-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
M = "llama3.2:1b"


async def generate(fleet) -> str:
    async with fleet.post("/api/generate", {"model": M, "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200
        return resp.headers["X-Beacon-Worker"]


async def test_the_admin_api_is_off_without_a_token_and_refuses_a_wrong_one(start_fleet):
    off = await start_fleet(WorkerSpec("gpu0"))
    async with off.post("/admin/reload", headers=AUTH) as resp:
        assert resp.status == 403 and "BEACON_ADMIN_TOKEN" in (await resp.json())["error"]
    fleet = await start_fleet(WorkerSpec("gpu0"), admin_token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        async with fleet.post("/admin/workers/gpu0/drain", headers=headers) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in (await resp.json())["error"]
    assert not fleet.gateway.holder.current.workers["gpu0"].drained, "refused calls change nothing"
    async with fleet.get("/health") as resp:
        assert TOKEN not in await resp.text()


async def test_a_drained_worker_gets_no_new_requests_until_undrained(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), admin_token=TOKEN)
    async with fleet.post("/admin/workers/gpu0/drain", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json()) == {"worker": "gpu0", "drained": True, "inflight": 0,
                                                              "state": "drained"}
    assert {await generate(fleet) for _ in range(6)} == {"gpu1"}
    await fleet.probe()
    async with fleet.get("/health", headers=AUTH) as resp:
        states = {w["name"]: w["state"] for w in (await resp.json())["workers"]}
    assert states == {"gpu0": "drained", "gpu1": "healthy"}, "a probe does not undo a drain"
    async with fleet.get("/metrics") as resp:
        assert 'beacon_worker_state{state="drained",worker="gpu0"} 1.0' in await resp.text()
    async with fleet.post("/admin/workers/gpu0/undrain", headers=AUTH) as resp:
        assert (await resp.json())["state"] == "healthy"
    await fleet.stop_worker("gpu1")
    assert await generate(fleet) == "gpu0"
    async with fleet.post("/admin/workers/nope/drain", headers=AUTH) as resp:
        assert resp.status == 404 and "gpu0" in (await resp.json())["error"]


async def test_warm_and_unload_a_model_on_a_worker_and_explain_where_a_request_would_go(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), admin_token=TOKEN)
    async with fleet.post("/admin/workers/gpu1/warm", {"model": M}, headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["resident"] is True
    assert M in fleet.workers["gpu1"].loaded and M not in fleet.workers["gpu0"].loaded
    async with fleet.post("/admin/explain", {"model": M}, headers=AUTH) as resp:
        plan = await resp.json()
    assert plan["verdict"] == "ok" and plan["candidates"][0] == {"worker": "gpu1", "reason": "resident",
                                                                 "loads": False, "evicts": []}
    assert plan["workers"]["gpu1"]["resident"] and not plan["workers"]["gpu0"]["resident"]
    async with fleet.post("/admin/workers/gpu1/unload", {"model": M}, headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["resident"] is False
    assert M not in fleet.workers["gpu1"].loaded
    async with fleet.post("/admin/explain", {"model": "nothing:here"}, headers=AUTH) as resp:
        assert (await resp.json())["verdict"] == "unknown-model"
    for body, status in (({"model": 3}, 400), ({"model": M, "num_predict": -1}, 400), (None, 400),
                         ({"model": "nothing:here"}, 404)):
        path = "/admin/explain" if status == 400 else "/admin/workers/gpu0/warm"
        async with fleet.post(path, body, headers=AUTH) as resp:
            assert resp.status == status and isinstance((await resp.json())["error"], str)


async def test_reload_through_the_admin_api_reports_errors_with_their_key_paths(start_fleet, tmp_path):
    path = tmp_path / "beacon.toml"
    fleet = await start_fleet(WorkerSpec("gpu0"), admin_token=TOKEN, config_path=path)
    async with fleet.post("/admin/reload", headers=AUTH) as resp:
        assert (await resp.json())["result"] == "unchanged"
    path.write_text(fleet.config_text + "[health]\ninterval_s = -1\n")
    async with fleet.post("/admin/reload", headers=AUTH) as resp:
        body = await resp.json()
    assert resp.status == 422 and body["result"] == "failed" and body["errors"][0].startswith("health.interval_s")
    path.write_text(fleet.config_text + "[health]\ninterval_s = 3\n")
    async with fleet.post("/admin/reload", headers=AUTH) as resp:
        body = await resp.json()
    assert body["result"] == "ok" and body["changed"] == [] and fleet.gateway.holder.current.config.health.interval_s == 3
