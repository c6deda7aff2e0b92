"""A pull, copy or delete goes to many workers at once. Its request is counted with worker="several",
not with the list of workers it reached: one label per subset of the fleet would be unbounded (at
1,000 workers, every pull while a different set is up would mint a new series, 10 KB long)."""

from __future__ import annotations

import re

from tests.conftest import WorkerSpec


async def test_a_fanned_out_request_is_counted_once_under_several(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), WorkerSpec("gpu2"))
    async with fleet.post("/api/pull", {"model": "qwen2.5:0.5b", "stream": False}) as resp:
        assert resp.status == 200
    await fleet.stop_worker("gpu2")  # a pull that fails on one worker counts the same way
    async with fleet.post("/api/pull", {"model": "qwen2.5:0.5b", "stream": False}) as resp:
        assert resp.status == 502
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    requests = [line for line in text.splitlines() if line.startswith("beacon_requests_total{")]
    workers = {re.search(r'worker="([^"]*)"', line)[1] for line in requests}
    assert workers == {"several"}, workers
    assert 'beacon_requests_total{endpoint="pull",model="qwen2.5:0.5b",outcome="ok",worker="several"} 1.0' in text
