"""Ollama reloads a loaded model for a request with other runner options (num_ctx...), so residency
is (model, load-time options): a request goes to the copy loaded with its num_ctx; one that no copy
has is a load (reason "options"), placed where a cold load would go, and it reloads the copy other
clients use only when no other worker can take it. Real simulated workers, which reload as Ollama."""

from tests.conftest import WorkerSpec

M = "llama3.2:1b"  # trained for 4096 tokens in the simulator; its default context on these workers: 4096


async def generate(http, url: str, num_ctx: int | None = None) -> tuple[int, str, dict]:
    body: dict = {"model": M, "prompt": "x", "stream": False, "options": {"num_predict": 2}}
    if num_ctx is not None:
        body["options"]["num_ctx"] = num_ctx
    async with http.post(url + "/api/generate", json=body) as resp:
        return resp.status, resp.headers.get("X-Beacon-Worker", ""), await resp.json()


async def loads_metric(fleet) -> list[str]:
    async with fleet.get("/metrics") as resp:
        return [line for line in (await resp.text()).splitlines() if line.startswith("beacon_model_loads_total{")]


async def test_requests_go_to_the_copy_loaded_with_their_num_ctx_and_load_nothing(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    await generate(fleet.http, fleet.worker_urls["gpu0"], num_ctx=2048)  # loaded straight on the workers
    await generate(fleet.http, fleet.worker_urls["gpu1"], num_ctx=4096)
    await fleet.probe()  # /api/ps: context_length 2048 on gpu0, 4096 on gpu1
    for _ in range(3):
        for num_ctx, worker in ((2048, "gpu0"), (4096, "gpu1")):
            status, served_by, _ = await generate(fleet.http, fleet.url, num_ctx)
            assert (status, served_by) == (200, worker)
    assert fleet.workers["gpu0"].stats.loads == fleet.workers["gpu1"].stats.loads == [M], "no reload anywhere"
    assert await loads_metric(fleet) == []


async def test_a_num_ctx_no_copy_has_loads_on_a_free_worker_not_over_the_copy_others_use(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    await generate(fleet.http, fleet.worker_urls["gpu0"])  # the copy everybody uses: the default context
    await fleet.probe()
    status, served_by, answer = await generate(fleet.http, fleet.url, num_ctx=2048)
    assert (status, served_by) == (200, "gpu1") and answer["load_duration"] > 0
    assert await loads_metric(fleet) == [f'beacon_model_loads_total{{model="{M}",reason="options",worker="gpu1"}} 1.0']
    assert fleet.workers["gpu0"].stats.loads == [M] and fleet.workers["gpu0"].stats.unloads == []
    assert (await generate(fleet.http, fleet.url))[1] == "gpu0", "the default context's copy still serves its clients"
    assert (await generate(fleet.http, fleet.url, num_ctx=2048))[1] == "gpu1", "and the new one its own"
    assert fleet.workers["gpu0"].stats.loads == fleet.workers["gpu1"].stats.loads == [M]


async def test_with_no_other_worker_the_mismatch_reloads_the_copy_and_is_counted_as_a_load(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    await generate(fleet.http, fleet.url)
    status, served_by, answer = await generate(fleet.http, fleet.url, num_ctx=2048)
    assert (status, served_by) == (200, "gpu0") and answer["load_duration"] > 0
    sim = fleet.workers["gpu0"]
    assert sim.stats.loads == [M, M] and sim.stats.evictions == [], "a reload, not an eviction"
    assert sim.loaded[M].runner.num_ctx == 2048
    assert f'beacon_model_loads_total{{model="{M}",reason="options",worker="gpu0"}} 1.0' in await loads_metric(fleet)
