from tests.conftest import WorkerSpec

DISK = "big:13b=6GiB,small:1b=1GiB,new:7b=3GiB"


async def preload(fleet, worker: str, model: str) -> None:
    async with fleet.http.post(fleet.worker_urls[worker] + "/api/generate", json={"model": model}) as resp:
        assert resp.status == 200


async def test_a_cold_model_goes_to_the_worker_with_room_for_it(start_fleet):
    spec = {"models": DISK, "vram_gib": 8, "extra_toml": "vram_gib = 8\n"}
    fleet = await start_fleet(WorkerSpec("gpu0", **spec), WorkerSpec("gpu1", **spec))
    await preload(fleet, "gpu0", "big:13b")    # 2 GiB free: new:7b would evict big
    await preload(fleet, "gpu1", "small:1b")   # 7 GiB free: new:7b fits beside small
    await fleet.probe()
    async with fleet.post("/api/generate", {"model": "new:7b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200
        assert resp.headers["X-Beacon-Worker"] == "gpu1"
    assert fleet.workers["gpu1"].stats.evictions == [] and fleet.workers["gpu0"].stats.evictions == []
    assert set(fleet.workers["gpu0"].loaded) == {"big:13b"}
    async with fleet.get("/metrics") as resp:
        assert 'beacon_model_loads_total{model="new:7b",reason="fits",worker="gpu1"} 1.0' in await resp.text()


async def test_nvml_readings_size_the_headroom_when_the_gpu_is_on_this_host(start_fleet):
    from gateway.gpu import GpuReading, GpuStatus

    class FakeNvml:  # the GPU reader seam: a real object with readings a test can set
        def __init__(self) -> None:
            self.used = {0: 1 * 1024**3, 1: 1 * 1024**3}

        def read(self, indices):
            return GpuStatus(True, "", {i: GpuReading(i, True, 8 * 1024**3, self.used[i], "Fake H100", 50)
                                        for i in indices})

    nvml = FakeNvml()
    fleet = await start_fleet(WorkerSpec("gpu0", DISK, extra_toml="gpu_index = 0\n"),
                              WorkerSpec("gpu1", DISK, extra_toml="gpu_index = 1\n"), gpu_reader=nvml)
    nvml.used[0] = 7 * 1024**3  # something outside the gateway's view fills GPU 0
    await fleet.gateway.gpus.step()
    async with fleet.post("/api/generate", {"model": "new:7b", "prompt": "x", "stream": False}) as resp:
        assert resp.headers["X-Beacon-Worker"] == "gpu1"
    async with fleet.get("/health") as resp:
        body = await resp.json()
    gpu0 = body["workers"][0]
    assert body["nvml"] == "ok" and gpu0["vram_source"] == "nvml"
    assert gpu0["vram_total_bytes"] == 8 * 1024**3 and gpu0["gpu"]["name"] == "Fake H100"


async def test_without_nvml_the_gateway_falls_back_quietly_and_says_so(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", DISK, extra_toml="gpu_index = 0\nvram_gib = 8\n"))
    await fleet.gateway.gpus.step()  # the real NVML reader: this machine has no GPU driver
    async with fleet.get("/health") as resp:
        body = await resp.json()
    assert resp.status == 200 and body["nvml"].startswith("NVML unavailable")
    assert body["workers"][0]["vram_source"] == "config" and body["workers"][0]["vram_total_bytes"] == 8 * 1024**3
