"""Hot reload: a valid file swaps in whole, requests in flight finish on the old world, a removed
worker drains, an added one warms before traffic; a broken file changes nothing and says why."""

import orjson
from structlog.testing import capture_logs

from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.conftest import GIB, WorkerSpec

PIN = '[models."llama3.2:1b"]\npin = ["gpu2"]\n'


async def metric(fleet, line_start: str) -> float:
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start))


async def test_a_reload_drains_a_removed_worker_and_warms_an_added_one_before_traffic(
        start_fleet, aiohttp_server, tmp_path):
    path = tmp_path / "beacon.toml"
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1", models="slow:1b=0.5GiB", tokens_per_s=40),
                              config_path=path)
    gpu2 = SimWorker(name="gpu2", models=parse_models("llama3.2:1b=1.3GiB"), vram_bytes=24 * GIB,
                     tokens_per_s=2000, load_s_per_gib=0.01)
    gpu2_url = str((await aiohttp_server(build_sim_app(gpu2))).make_url("")).rstrip("/")
    before = fleet.gateway.holder.current.config.version

    async with fleet.post("/api/generate", {"model": "slow:1b", "prompt": "x", "options": {"num_predict": 40}}) as resp:
        first = orjson.loads(await resp.content.readline())
        assert resp.headers["X-Beacon-Worker"] == "gpu1" and first["done"] is False
        new_text = fleet.config_text.split("[[workers]]\nname = \"gpu1\"")[0] + (
            f'[[workers]]\nname = "gpu2"\nurl = "{gpu2_url}"\nkind = "ollama"\n' + PIN)
        path.write_text(new_text)
        await fleet.gateway.reloader.watch_step()  # the file watch's poll sees the change

        snap = fleet.gateway.holder.current
        assert snap.config.version != before and sorted(snap.workers) == ["gpu0", "gpu2"]
        assert "llama3.2:1b" in gpu2.loaded, "the pinned model was loaded on the new worker by the reload"
        assert snap.workers["gpu2"].serving, "warmed, then open to traffic"
        async with fleet.get("/health") as health:
            assert (await health.json())["removed_draining"] == [{"name": "gpu1", "inflight": 1}]
        async with fleet.post("/api/generate", {"model": "slow:1b", "prompt": "x"}) as refused:
            assert refused.status == 404, "no worker in the new config has it: nothing new goes to gpu1"
        lines = [orjson.loads(line) async for line in resp.content if line.strip()]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 40, "the request in flight finished"
    async with fleet.get("/health") as health:
        assert (await health.json())["removed_draining"] == []
    assert await metric(fleet, 'beacon_config_reloads_total{result="ok"}') == 1


async def test_a_broken_config_keeps_the_old_one_logs_every_error_and_counts_a_failure(start_fleet, tmp_path):
    path = tmp_path / "beacon.toml"
    fleet = await start_fleet(WorkerSpec("gpu0"), config_path=path)
    before = fleet.gateway.holder.current
    path.write_text('[[workers]]\nname = "gpu0"\nurl = "not a url"\n[server]\nbogus = 1\n')
    with capture_logs() as logs:
        await fleet.gateway.reloader.watch_step()
    errors = [e["error"] for e in logs if e["event"] == "config.invalid"]
    assert any(e.startswith("workers[0].url") for e in errors) and any("server.bogus" in e for e in errors)
    assert fleet.gateway.holder.current.config is before.config, "the old config stays whole"
    assert await metric(fleet, 'beacon_config_reloads_total{result="failed"}') == 1
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False}) as resp:
        assert resp.status == 200, "and keeps serving"
    await fleet.gateway.reloader.watch_step()
    assert await metric(fleet, 'beacon_config_reloads_total{result="failed"}') == 1, "an unchanged file is not re-read"
    path.write_text(fleet.config_text)
    result = await fleet.gateway.reloader.reload("test")
    assert result.result == "unchanged" and fleet.gateway.holder.current.config is before.config
