import asyncio

from tests.conftest import WorkerSpec

WARM = '[models."llama3.2:1b"]\nkeep_warm = 1\nkeep_alive = "1s"\n[warmer]\nrearm_before_s = 0.7\n'


async def test_keep_warm_loads_at_start_and_rearms_before_expiry(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1GiB,other:1b=1GiB"), config_extra=WARM)
    worker = fleet.workers["gpu0"]
    planned = await fleet.gateway.warmer.step()
    assert [(w.worker, w.model, w.reason) for w in planned] == [("gpu0", "llama3.2:1b", "keep_warm")]
    assert "llama3.2:1b" in worker.loaded
    async with fleet.http.post(fleet.worker_urls["gpu0"] + "/api/generate",
                               json={"model": "other:1b", "keep_alive": "1s"}) as resp:
        assert resp.status == 200   # a model nobody keeps warm, with the same keep_alive
    for _ in range(8):  # 2.4 s: more than twice the keep_alive
        await asyncio.sleep(0.3)
        await fleet.probe()
        await fleet.gateway.warmer.step()
        assert "llama3.2:1b" in worker.loaded
    assert "other:1b" not in worker.loaded, "the control: an unwarmed model expired"
    assert worker.stats.loads.count("llama3.2:1b") == 1, "re-arming never reloads"


async def test_recent_traffic_keeps_a_model_on_a_gpu(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        worker = resp.headers["X-Beacon-Worker"]
    fleet.workers[worker].unload_now("llama3.2:1b")  # e.g. its keep_alive ran out
    await fleet.probe()
    planned = await fleet.gateway.warmer.step()
    assert [(w.model, w.reason) for w in planned] == [("llama3.2:1b", "demand")]
    assert any("llama3.2:1b" in w.loaded for w in fleet.workers.values())
