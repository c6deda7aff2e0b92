"""Limits of the listener and the front API: connection cap, request-head and body deadlines
(slow loris), header and per-endpoint body sizes, maximum stream time, and credentials that go
only where configured. Each refusal is clear and the gateway keeps serving everyone else."""

import asyncio

import aiohttp
import orjson
import pytest

from gateway import runner
from gateway.app import build_app
from gateway.config import parse_config
from gateway.settings import Settings
from tests.conftest import WorkerSpec, worker_toml


@pytest.fixture
async def guarded(start_fleet):
    """A fleet whose gateway listens through runner.start with tight connection limits."""
    started = []

    async def start(**limits):
        fleet = await start_fleet(WorkerSpec("gpu0"))
        toml = worker_toml(WorkerSpec("gpu0"), fleet.worker_urls["gpu0"])
        app = build_app(Settings(), parse_config(toml.encode()), run_loops=False)
        app_runner, port = await runner.start(app, "127.0.0.1", 0, runner.ConnectionLimits(**limits))
        started.append(app_runner)
        return port

    yield start
    for app_runner in started:
        await app_runner.cleanup()


async def get_health(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health/live") as resp:
        return resp.status


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    return await asyncio.wait_for(reader.read(), seconds)  # b"" or a final answer, then EOF


async def test_a_client_trickling_its_request_head_is_closed_and_others_are_served(guarded):
    port = await guarded(header_timeout_s=0.3, idle_timeout_s=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
    assert await get_health(port) == 200
    assert await closed_within(reader, 3) == b"", "closed at the head deadline"
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await closed_within(reader, 5)  # answered, then closed when idle past its deadline
    assert answer.startswith(b"HTTP/1.1 200") and b'"alive"' in answer
    writer.close()


async def test_past_max_connections_a_new_connection_gets_503_and_is_closed(guarded):
    port = await guarded(max_connections=2, header_timeout_s=5)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = await closed_within(reader, 3)
    assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in answer
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": "too many connections to the gateway"}
    for _, w in held:
        w.close()
    writer.close()
    await asyncio.sleep(0.1)
    assert await get_health(port) == 200, "places free up when connections close"


async def test_an_oversized_header_is_refused(guarded):
    port = await guarded(max_header_bytes=2048)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/health/live", headers={"X-Big": "a" * 4096}) as resp:
            assert resp.status in (400, 431)
    assert await get_health(port) == 200


async def test_a_body_trickled_past_body_timeout_gets_408_and_body_limits_are_per_endpoint(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nbody_timeout_s = 0.3\nbody_mib = { show = 0.001 }\n")
    host, port = fleet.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\":")
    answer = await asyncio.wait_for(reader.read(4096), 5)
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 0.3s" in answer
    writer.close()
    async with fleet.post("/api/show", {"model": "llama3.2:1b", "pad": "x" * 2000}) as resp:
        assert resp.status == 413 and "/api/show" in (await resp.json())["error"]
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x" * 2000, "stream": False}) as resp:
        assert resp.status == 200, "the generate limit is still max_body_mib"


async def test_a_stream_past_max_stream_s_ends_with_an_error_line_and_frees_the_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=20), config_extra="[server]\nmax_stream_s = 0.5\n")
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x",
                                            "options": {"num_predict": 200}}) as resp:
        lines = [orjson.loads(line) for line in (await resp.read()).splitlines() if line.strip()]
    assert "max_stream_s" in lines[-1]["error"] and not any(line.get("done") for line in lines)
    for _ in range(100):
        if fleet.workers["gpu0"].stats.cancelled:
            break
        await asyncio.sleep(0.02)
    assert fleet.workers["gpu0"].stats.cancelled == 1, "the worker stopped generating"
    async with fleet.get("/metrics") as resp:
        assert 'outcome="too_long"' in await resp.text()


async def test_a_client_authorization_reaches_only_workers_configured_to_take_it(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1", models="other:1b=1GiB",
                                                             extra_toml="forward_client_auth = true\n"))
    for model in ("llama3.2:1b", "other:1b"):
        async with fleet.post("/api/generate", {"model": model, "prompt": "x", "stream": False},
                              headers={"Authorization": "Bearer user-token"}) as resp:
            assert resp.status == 200
    assert fleet.workers["gpu0"].stats.authorization == {}
    assert fleet.workers["gpu1"].stats.authorization == {"Bearer user-token": 1}
