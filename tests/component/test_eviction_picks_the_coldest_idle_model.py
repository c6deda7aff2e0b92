from tests.conftest import WorkerSpec


async def generate(fleet, model: str) -> str:
    async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200
        return resp.headers["X-Beacon-Worker"]


async def test_a_load_that_must_evict_does_so_where_the_victim_is_coldest(start_fleet):
    spec = {"vram_gib": 4, "extra_toml": "vram_gib = 4\n"}
    fleet = await start_fleet(WorkerSpec("gpu0", "a:3b=3GiB,c:3b=3GiB", **spec),
                              WorkerSpec("gpu1", "b:3b=3GiB,c:3b=3GiB", **spec))
    assert await generate(fleet, "a:3b") == "gpu0"
    assert await generate(fleet, "b:3b") == "gpu1"   # b is now the more recently used model
    await fleet.probe()
    assert await generate(fleet, "c:3b") == "gpu0"   # evicts a (coldest), keeps b warm
    assert fleet.workers["gpu0"].stats.evictions == ["a:3b"]
    assert set(fleet.workers["gpu1"].loaded) == {"b:3b"} and fleet.workers["gpu1"].stats.evictions == []
