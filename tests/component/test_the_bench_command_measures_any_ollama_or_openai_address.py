"""`beacon-gateway bench` against the real gateway and a worker: counts, rates and failures are
what was sent, for both APIs, closed and open loop, and failures are reported, not hidden."""

import json

import pytest

from gateway import bench
from tests.conftest import WorkerSpec


@pytest.mark.parametrize("api,stream", [("ollama", True), ("ollama", False), ("openai", True), ("openai", False)])
async def test_bench_counts_tokens_and_times_through_the_gateway(start_fleet, api, stream):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    options = bench.Options(url=fleet.url, api=api, num_predict=12, stream=stream, concurrency=4, requests=20)
    report = await bench.run(options)
    assert (report.sent, report.ok, report.failed, report.success_rate) == (20, 20, 0, 1.0)
    assert report.total_tokens == 20 * 12, "the final counts of every answer"
    assert report.latency_s["p50"] > 0 and report.ttft_s["p99"] <= report.latency_s["max"]
    assert fleet.workers["gpu0"].stats.completed == 20


async def test_open_loop_respects_its_bounds_and_failures_are_counted(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    options = bench.Options(url=fleet.url, models=("llama3.2:1b", "missing:7b"), num_predict=4, rate=200.0,
                            requests=40, seed=3)
    report = await bench.run(options)
    assert report.sent == 40 and 0 < report.failed < 40 and report.ok + report.failed == 40
    assert any(key.startswith("HTTP 404") for key in report.errors)
    assert report.timeouts == 0
    written = json.loads(json.dumps(bench.asdict(report)))  # what --json writes
    assert written["sent"] == 40 and written["options"]["rate"] == 200.0
    text = bench.render(report)
    assert "40 sent" in text and "HTTP 404" in text


async def test_an_unreachable_address_is_a_failure_not_a_hang():
    report = await bench.run(bench.Options(url="http://127.0.0.1:9", requests=5, concurrency=2, timeout_s=2))
    assert report.sent == 5 and report.failed == 5 and report.success_rate == 0.0
