import asyncio

import orjson

from tests.conftest import WorkerSpec


async def test_worker_dropping_mid_stream_leaves_the_client_one_error_line(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    for w in fleet.workers.values():
        w.set_mode("drop")
    body = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 50}}
    async with fleet.post("/api/generate", body) as resp:
        assert resp.status == 200
        raw = await resp.read()
    lines = [orjson.loads(x) for x in raw.splitlines() if x.strip()]  # every line is whole JSON
    assert lines[0]["done"] is False
    assert "error" in lines[-1] and "failed mid-stream" in lines[-1]["error"]
    assert sum("error" in line for line in lines) == 1
    assert not any(line.get("done") for line in lines)


async def test_a_client_that_goes_away_stops_the_generation_on_the_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=20))
    body = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 1000}}
    resp = await fleet.post("/api/generate", body)
    await resp.content.readline()
    resp.close()  # drop the connection mid-stream
    worker = fleet.workers["gpu0"]
    for _ in range(200):
        if worker.stats.cancelled:
            break
        await asyncio.sleep(0.01)
    assert worker.stats.cancelled == 1 and worker.stats.completed == 0
    assert fleet.gateway.inflight.get("gpu0") == 0
