from tests.conftest import WorkerSpec

REQ = {"model": "llama3.2:1b", "prompt": "x", "stream": False, "options": {"num_predict": 2}}


async def test_cpu_worker_serves_when_every_gpu_worker_is_down_and_gpus_win_back(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("cpu0", tier="cpu"),
                              config_extra="[health]\nhealthy_threshold = 1\ntimeout_s = 0.3\n")
    async with fleet.post("/api/generate", REQ) as resp:
        assert resp.headers["X-Beacon-Worker"].startswith("gpu")
    for name in ("gpu0", "gpu1"):
        fleet.workers[name].set_mode("hang")  # probes time out too, so the loop marks them down
    for _ in range(fleet.gateway.holder.current.config.health.unhealthy_threshold):
        await fleet.probe()
    snap = fleet.gateway.holder.current
    assert not snap.worker("gpu0").up and not snap.worker("gpu1").up
    async with fleet.post("/api/generate", REQ) as resp:
        assert resp.status == 200
        assert resp.headers["X-Beacon-Worker"] == "cpu0"
    for name in ("gpu0", "gpu1"):
        fleet.workers[name].set_mode("ok")
    await fleet.probe()
    async with fleet.post("/api/generate", REQ) as resp:
        assert resp.headers["X-Beacon-Worker"].startswith("gpu")
