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


async def test_an_embedding_model_is_kept_warm_too(start_fleet):
    # Ollama refuses an empty-prompt generate for an embedding model ("does not support generate"):
    # the warm-up loads it with an empty /api/embed instead.
    config = '[models."nomic-embed-text"]\nkeep_warm = 1\n'
    fleet = await start_fleet(WorkerSpec("gpu0", "nomic-embed-text:latest=0.3GiB"), config_extra=config)
    await fleet.gateway.warmer.step()
    assert "nomic-embed-text:latest" in fleet.workers["gpu0"].loaded


async def test_a_rearm_keeps_the_context_a_copy_was_loaded_with(start_fleet):
    # A re-arm sent without the copy's runner options would make Ollama reload it at its defaults
    # (sched.go needsReload): the warmer sends the num_ctx the gateway last sent that copy.
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1GiB"), config_extra=WARM)
    worker = fleet.workers["gpu0"]
    await fleet.gateway.warmer.step()  # keep_warm: loaded at the worker's default context
    body = {"model": "llama3.2:1b", "prompt": "x", "stream": False, "options": {"num_ctx": 2048, "num_predict": 2},
            "keep_alive": "1s"}
    async with fleet.post("/api/generate", body) as resp:
        assert resp.status == 200
    loads = worker.stats.loads.count("llama3.2:1b")  # the request reloaded it at 2048
    for _ in range(6):  # 1.8 s: past the 1 s keep_alive, so the warmer re-arms it more than once
        await asyncio.sleep(0.3)
        await fleet.probe()
        await fleet.gateway.warmer.step()
    assert worker.stats.loads.count("llama3.2:1b") == loads, "a re-arm reloaded the copy"
    assert loads == 2 and worker.loaded["llama3.2:1b"].runner.num_ctx == 2048
