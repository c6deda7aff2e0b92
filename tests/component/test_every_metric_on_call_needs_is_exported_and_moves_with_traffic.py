"""/metrics: every metric name the on-call guide promises is there, in base units, with bounded
labels, and moves with traffic, failover and reloads."""

import re

from gateway.gpu import GpuReading, GpuStatus
from tests.conftest import WorkerSpec

M = "llama3.2:1b"
NAMES = ("beacon_requests_total", "beacon_request_duration_seconds_bucket", "beacon_time_to_first_token_seconds_bucket",
         "beacon_tokens_generated_total", "beacon_inflight_requests", "beacon_queue_depth", "beacon_worker_up",
         "beacon_worker_state", "beacon_model_resident", "beacon_worker_vram_bytes", "beacon_gpu_memory_used_bytes",
         "beacon_gpu_memory_total_bytes", "beacon_gpu_utilization_ratio", "beacon_gpu_temperature_celsius",
         "beacon_gpu_power_watts", "beacon_gpu_readable", "beacon_model_loads_total", "beacon_failovers_total",
         "beacon_config_reloads_total", "beacon_event_loop_tasks", "process_resident_memory_bytes",
         "process_open_fds")


class OneGpu:
    """The GPU reader seam: a real object whose readings the test sets."""

    def read(self, indices):
        return GpuStatus(True, "", {i: GpuReading(i, True, 80 * 1024**3, 20 * 1024**3, "Fake H100", 40,
                                                  temperature_c=55, power_watts=210.5) for i in indices})


async def scrape(fleet) -> dict[str, float]:
    async with fleet.get("/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if re.match(rf"{name}(\{{|$)", k) and all(w in k for w in want))


async def test_every_metric_name_appears_and_moves_with_traffic(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", extra_toml="gpu_index = 0\n"), WorkerSpec("gpu1"),
                              gpu_reader=OneGpu())
    await fleet.gateway.gpus.step()
    before = await scrape(fleet)
    for _ in range(3):
        async with fleet.post("/api/generate", {"model": M, "prompt": "x", "options": {"num_predict": 5}}) as resp:
            await resp.read()
    await fleet.probe()
    after = await scrape(fleet)
    missing = [n for n in NAMES if not any(re.match(rf"{n}(\{{|$)", k) for k in after)]
    assert missing == []
    assert total(after, "beacon_requests_total", endpoint="generate", outcome="ok") - \
        total(before, "beacon_requests_total", endpoint="generate", outcome="ok") == 3
    assert total(after, "beacon_tokens_generated_total", model=M) == 15
    assert total(after, "beacon_request_duration_seconds_count", model=M) == 3
    assert total(after, "beacon_time_to_first_token_seconds_count", model=M) == 3
    assert total(after, "beacon_model_resident", model=M) >= 1
    assert after['beacon_gpu_memory_used_bytes{gpu="0"}'] == 20 * 1024**3
    assert after['beacon_gpu_utilization_ratio{gpu="0"}'] == 0.4
    assert after['beacon_worker_vram_bytes{kind="total",worker="gpu0"}'] == 80 * 1024**3
    assert after['beacon_worker_state{state="healthy",worker="gpu0"}'] == 1
    assert total(after, "beacon_worker_state", worker="gpu0") == 1, "exactly one state at a time"

    await fleet.stop_worker("gpu0")
    await fleet.stop_worker("gpu1")
    async with fleet.post("/api/generate", {"model": M, "prompt": "x", "stream": False}) as resp:
        assert resp.status in (502, 503)
    await fleet.probe()
    down = await scrape(fleet)
    assert total(down, "beacon_failovers_total") > total(after, "beacon_failovers_total")
    assert down['beacon_worker_up{tier="gpu",worker="gpu0"}'] == 0
    assert down['beacon_worker_state{state="down",worker="gpu0"}'] == 1


async def test_model_labels_stay_bounded_whatever_clients_send(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    for i in range(20):
        async with fleet.post("/api/generate", {"model": f"made-up-{i}", "prompt": "x"}) as resp:
            assert resp.status == 404
    samples = await scrape(fleet)
    models = {m for k in samples for m in re.findall(r'model="([^"]*)"', k)}
    assert not any(m.startswith("made-up") for m in models) and "other" in models
    assert fleet.gateway.admission.depths() == {} and not fleet.gateway.admission._queues, "no queue per name"
    assert not any(m.startswith("made-up") for m in fleet.gateway.inflight.demand()), "no demand for names"


async def test_refusals_at_random_paths_keep_endpoint_labels_bounded(start_fleet):
    key = "k" * 24
    from gateway.access import hash_key

    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra=f'[[clients]]\nname = "a"\nkey_sha256 = "{hash_key(key)}"\n')
    for i in range(10):
        async with fleet.post(f"/api/nothing-{i}", {}) as resp:
            assert resp.status == 401
    samples = await scrape(fleet)
    endpoints = {m for k in samples for m in re.findall(r'endpoint="([^"]*)"', k)}
    assert endpoints == {"unknown"}, endpoints
