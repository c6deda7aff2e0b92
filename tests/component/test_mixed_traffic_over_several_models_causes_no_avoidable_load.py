import asyncio
import random

from tests.conftest import WorkerSpec

MODELS = "llama3.2:1b=1GiB,qwen2.5:7b=2GiB,mistral:7b=2GiB"


async def test_mixed_concurrent_traffic_loads_each_model_once(start_fleet):
    # Loads take 0.3-0.6 s here, so a burst that arrives before any probe saw a load is the hard case.
    spec = {"models": MODELS, "load_s_per_gib": 0.3, "tokens_per_s": 500, "extra_toml": "vram_gib = 24\n"}
    fleet = await start_fleet(WorkerSpec("gpu0", **spec), WorkerSpec("gpu1", **spec))
    names = ["llama3.2:1b", "qwen2.5:7b", "mistral:7b"]
    rng = random.Random(7)

    async def one(model: str) -> int:
        body = {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}
        async with fleet.post("/api/generate", body) as resp:
            return resp.status

    for _wave in range(4):
        statuses = await asyncio.gather(*(one(rng.choice(names)) for _ in range(12)))
        assert statuses == [200] * 12
        await fleet.probe()
    loads = [m for w in fleet.workers.values() for m in w.stats.loads]
    assert sorted(loads) == sorted(names), f"each model loaded exactly once across the fleet, got {loads}"
    assert all(not w.stats.evictions for w in fleet.workers.values())
