import time

from tests.conftest import WorkerSpec


async def test_health_is_200_while_a_worker_serves_and_503_when_none_does(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[health]\nunhealthy_threshold = 1\n")
    async with fleet.get("/health") as resp:
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok"
    assert body["workers"][0]["name"] == "gpu0" and body["workers"][0]["state"] == "healthy"
    assert body["config"]["version"] and body["snapshot"]["version"] >= 1
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    async with fleet.get("/health") as resp:
        body = await resp.json()
        assert resp.status == 503 and body["problems"] == ["no worker is healthy (gpu0 down)"]
    assert body["workers"][0]["state"] == "down" and "cannot connect" in body["workers"][0]["error"]
    async with fleet.get("/health/live") as resp:
        assert resp.status == 200


async def test_metrics_count_requests_and_show_the_fleet(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200
    async with fleet.post("/api/generate", {"model": "unknown-thing", "prompt": "x"}) as resp:
        assert resp.status == 404
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert 'beacon_requests_total{endpoint="generate",model="llama3.2:1b",outcome="ok",worker="gpu0"} 1.0' in text
    assert 'beacon_worker_up{tier="gpu",worker="gpu0"} 1.0' in text
    refused = 'beacon_requests_total{endpoint="generate",model="other",outcome="not_found",worker="none"} 1.0'
    assert refused in text
    assert 'beacon_model_resident{model="llama3.2:1b",worker="gpu0"}' not in text  # resident only after a probe
    await fleet.probe()
    async with fleet.get("/metrics") as resp:
        assert 'beacon_model_resident{model="llama3.2:1b",worker="gpu0"} 1.0' in await resp.text()


async def test_status_page_renders_a_card_per_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("cpu0", tier="cpu"))
    async with fleet.get("/status") as resp:
        page = await resp.text()
    assert resp.content_type == "text/html"
    assert page.count('<div class="card ') == 2 and "gpu0" in page and "cpu0" in page


class Clock:
    """The gateway's monotonic clock, which a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def health(fleet) -> tuple[int, dict]:
    # The admin token reads the full report where one is set (and is ignored by an open install).
    async with fleet.get("/health", headers={"Authorization": "Bearer t"}) as resp:
        return resp.status, await resp.json()


async def test_health_is_503_when_the_control_loop_is_stuck_and_when_every_worker_is_drained(start_fleet):
    clock = Clock()
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), clock=clock, admin_token="t")
    assert (await health(fleet))[0] == 200
    clock.offset = 3 * fleet.gateway.holder.current.config.health.interval_s + 60  # no probe step ran meanwhile
    status, body = await health(fleet)
    assert status == 503 and body["problems"][0].startswith("control loop is stuck")
    await fleet.probe()
    assert (await health(fleet))[0] == 200, "a probe step that lands makes it fresh again"
    for name in ("gpu0", "gpu1"):
        async with fleet.post(f"/admin/workers/{name}/drain", headers={"Authorization": "Bearer t"}) as resp:
            assert resp.status == 200
    status, body = await health(fleet)
    assert status == 503 and body["problems"] == ["no worker is healthy (gpu0 drained, gpu1 drained)"]
    async with fleet.get("/health/live") as resp:
        assert resp.status == 200, "liveness is about the process, not the fleet"
