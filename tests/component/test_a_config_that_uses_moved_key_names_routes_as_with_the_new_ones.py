"""A config written before [failover]'s keys moved keeps routing as it did: `[failover]
degraded_rank = "after_cpu"` puts a degraded GPU worker behind the CPU tier just as `[degraded]
rank` does, and the gateway logs one warning per old key name at start and on every reload."""

import pytest
from structlog.testing import capture_logs

from tests.conftest import WorkerSpec

MODEL = "llama3.2:1b"
AFTER_CPU = {"old name": '[failover]\ndegraded_rank = "after_cpu"\n', "new name": '[degraded]\nrank = "after_cpu"\n'}


async def degraded_gpu_and_a_cpu(start_fleet, config_extra: str, **kwargs):
    """gpu0 holds the model but has lost its GPU (spilled to CPU in /api/ps): degraded; cpu0 can serve."""
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("cpu0", tier="cpu"), config_extra=config_extra, **kwargs)
    async with fleet.http.post(fleet.worker_urls["gpu0"] + "/api/generate", json={"model": MODEL}):
        pass
    fleet.workers["gpu0"].set_mode("gpu_lost")
    await fleet.probe()
    assert fleet.gateway.holder.current.workers["gpu0"].state == "degraded"
    return fleet


async def served_by(fleet) -> str:
    body = {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 4}}
    async with fleet.post("/api/generate", body) as resp:
        assert resp.status == 200
        return resp.headers["X-Beacon-Worker"]


async def test_without_the_key_a_degraded_gpu_worker_serves_before_the_cpu_tier(start_fleet):
    fleet = await degraded_gpu_and_a_cpu(start_fleet, "")
    assert await served_by(fleet) == "gpu0"


@pytest.mark.parametrize("name", AFTER_CPU)
async def test_after_cpu_puts_the_cpu_tier_first_under_the_old_name_as_under_the_new(start_fleet, name):
    fleet = await degraded_gpu_and_a_cpu(start_fleet, AFTER_CPU[name])
    assert fleet.gateway.holder.current.config.degraded.rank == "after_cpu"
    assert await served_by(fleet) == "cpu0"


async def test_the_gateway_warns_once_per_old_key_name_at_start_and_on_reload(start_fleet, tmp_path):
    path = tmp_path / "beacon.toml"
    old = AFTER_CPU["old name"] + "cpu_tokens_per_s = 15\n"
    with capture_logs() as started:
        fleet = await degraded_gpu_and_a_cpu(start_fleet, old, config_path=path)
    warned = [(e["log_level"], e["notice"].split(" has moved")[0]) for e in started if e["event"] == "config.old_key"]
    assert warned == [("warning", "[failover] degraded_rank"), ("warning", "[failover] cpu_tokens_per_s")]
    path.write_text(fleet.config_text.replace("cpu_tokens_per_s = 15\n", "") + "[cpu]\ntokens_per_s = 15\n")
    with capture_logs() as reloaded:
        await fleet.gateway.reloader.watch_step()
    assert fleet.gateway.holder.current.config.cpu.tokens_per_s == 15.0
    assert [e["notice"] for e in reloaded if e["event"] == "config.old_key"] == [
        "[failover] degraded_rank has moved to [degraded] rank; the old name is accepted until the next release"]
    assert await served_by(fleet) == "cpu0", "the reloaded config still ranks the degraded worker after the CPU tier"
