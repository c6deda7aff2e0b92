from tests.conftest import WorkerSpec


async def test_tags_lists_each_model_once_with_the_workers_holding_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB"),
                              WorkerSpec("gpu1", "llama3.2:1b=1.3GiB,mistral:7b=4.1GiB"))
    async with fleet.get("/api/tags") as resp:
        models = (await resp.json())["models"]
    by_name = {m["name"]: m for m in models}
    assert sorted(by_name) == ["llama3.2:1b", "mistral:7b", "qwen2.5:7b"]
    assert sorted(by_name["llama3.2:1b"]["workers"]) == ["gpu0", "gpu1"]
    assert by_name["qwen2.5:7b"]["size"] > 4 * 1024**3 and len(by_name["qwen2.5:7b"]["digest"]) == 64


async def test_ps_shows_what_is_loaded_now_with_the_worker_holding_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    async with fleet.get("/api/ps") as resp:
        assert (await resp.json())["models"] == []
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        worker = resp.headers["X-Beacon-Worker"]
    async with fleet.get("/api/ps") as resp:
        models = (await resp.json())["models"]
    assert [(m["name"], m["workers"]) for m in models] == [("llama3.2:1b", [worker])]
    assert models[0]["size_vram"] == models[0]["size"] and models[0]["expires_at"]


async def load(fleet, worker: str, model: str, keep_alive: str | int) -> None:
    """Load a model on one worker, asked directly."""
    async with fleet.http.post(fleet.worker_urls[worker] + "/api/generate",
                               json={"model": model, "keep_alive": keep_alive}) as resp:
        assert resp.status == 200


async def test_ps_lists_a_model_loaded_on_two_workers_once_as_ollama_lists_a_model(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1.3GiB,qwen2.5:7b=4.7GiB"), WorkerSpec("gpu1"))
    await load(fleet, "gpu0", "llama3.2:1b", "5m")
    await load(fleet, "gpu1", "llama3.2:1b", "1h")
    await load(fleet, "gpu0", "qwen2.5:7b", -1)  # forever: listed first, as Ollama lists longest remaining first
    await fleet.probe()
    async with fleet.get("/api/ps") as resp:
        models = (await resp.json())["models"]
    assert [(m["name"], m["workers"]) for m in models] == [("qwen2.5:7b", ["gpu0"]),
                                                           ("llama3.2:1b", ["gpu0", "gpu1"])]
    llama, snap = models[1], fleet.gateway.holder.current
    shorter, longest = (snap.worker(w).resident["llama3.2:1b"] for w in ("gpu0", "gpu1"))
    assert llama["expires_at"] == longest.expires_at != shorter.expires_at, "loaded until the last copy expires"
    assert (llama["size"], llama["size_vram"], llama["context_length"]) == \
           (longest.size, longest.size_vram, longest.context_length), "one copy's footprint, not a sum"
    assert llama["digest"] == longest.raw["digest"] and llama["details"] == longest.raw["details"]
    assert "worker" not in llama


async def test_version_is_the_lowest_among_workers(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", sim_options={"version": "0.12.6"}),
                              WorkerSpec("gpu1", sim_options={"version": "0.9.10"}))
    async with fleet.get("/api/version") as resp:
        assert await resp.json() == {"version": "0.9.10"}


async def test_root_answers_like_ollama(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.get("/") as resp:
        assert resp.status == 200 and await resp.text() == "Ollama is running"
    async with fleet.http.head(fleet.url + "/") as resp:
        assert resp.status == 200
