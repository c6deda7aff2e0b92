from tests.conftest import WorkerSpec

MODELS = "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB"


async def load_directly(fleet, worker: str, model: str) -> None:
    async with fleet.http.post(fleet.worker_urls[worker] + "/api/generate", json={"model": model}) as resp:
        assert (await resp.json())["done_reason"] == "load"


async def served_by(fleet, model: str) -> str:
    async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200, await resp.text()
        return resp.headers["X-Beacon-Worker"]


async def test_a_resident_copy_wins_over_a_worker_that_would_have_to_load(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", MODELS), WorkerSpec("gpu1", MODELS))
    await load_directly(fleet, "gpu1", "qwen2.5:7b")
    await fleet.probe()
    for _ in range(3):
        assert await served_by(fleet, "qwen2.5:7b") == "gpu1"
    assert fleet.workers["gpu0"].stats.loads == [], "no avoidable load on gpu0"


async def test_a_model_only_one_worker_holds_goes_to_that_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1.3GiB"), WorkerSpec("gpu1", MODELS))
    assert await served_by(fleet, "qwen2.5:7b") == "gpu1"


async def test_a_gpu_worker_that_must_load_beats_a_cpu_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("cpu0", tier="cpu"), WorkerSpec("gpu0"))
    await load_directly(fleet, "cpu0", "llama3.2:1b")
    await fleet.probe()
    assert await served_by(fleet, "llama3.2:1b") == "gpu0"


async def test_names_and_aliases_resolve_like_ollama(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3:latest=1GiB"),
                              config_extra='[models."llama3"]\naliases = ["default"]\n')
    for name in ("llama3", "LLAMA3:latest", "default", "registry.ollama.ai/library/llama3"):
        assert await served_by(fleet, name) == "gpu0"
