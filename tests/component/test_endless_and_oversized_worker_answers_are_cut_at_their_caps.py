"""Every read from a worker has a cap: an endless probe answer fails the probe at [health]
max_probe_kib with memory flat, a whole answer over [server] max_answer_mib fails over before
any byte (declared length, or an answer the gateway must translate), a large Ollama answer passed
through streams on as it arrives with its accounting intact, an endless one is cut at the cap,
and warm-up, error and progress readers stop at their bounds. The gateway keeps serving."""

import asyncio
import os
import re

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.component.fake_workers import MODEL, FakeWorker, body
from tests.conftest import WorkerSpec

MIB = 1024 * 1024
CAPS = """
[failover]
first_byte_timeout_s = 1
connect_timeout_s = 1
[health]
timeout_s = 1
unhealthy_threshold = 1
max_probe_kib = 256
listing_interval_s = 1  # not above interval_s: every probe step reads every probe path
[server]
max_answer_mib = 2
"""
SENT_BOUND = 24 * MIB  # the cap, plus what loopback socket buffers hold before the reader hangs up
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 3}}
TOKEN = "caps-test-token"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def peak_rss_growth(coro) -> tuple[object, int]:
    """Run `coro`, sampling this process's RSS (gateway and fake worker live here) every few ms."""
    base = peak = rss()
    task = asyncio.ensure_future(coro)
    while not task.done():
        await asyncio.wait({task}, timeout=0.005)
        peak = max(peak, rss())
    return task.result(), peak - base


async def start_evil(aiohttp_server, kind="ollama") -> tuple[FakeWorker, str]:
    evil = FakeWorker(kind)
    server = await aiohttp_server(evil.app())
    url = str(server.make_url("")).rstrip("/")
    return evil, url


async def tokens_generated(fleet) -> float:
    async with fleet.get("/metrics") as resp:
        found = re.search(rf'^beacon_tokens_generated_total{{model="{MODEL}"}} (\S+)$', await resp.text(), re.M)
    return float(found.group(1)) if found else 0.0


async def still_serves(fleet) -> None:
    async with fleet.get("/api/tags") as resp:
        assert resp.status == 200 and MODEL in await resp.text()


@pytest.mark.parametrize(("kind", "path"), [("ollama", "/api/tags"), ("ollama", "/api/ps"), ("ollama", "/api/version"),
                                            ("llamacpp", "/props"), ("llamacpp", "/slots"), ("llamacpp", "/health"),
                                            ("openai", "/v1/models")])
async def test_an_endless_probe_answer_fails_the_probe_at_its_cap_and_memory_stays_flat(
        start_fleet, aiohttp_server, kind, path):
    evil, url = await start_evil(aiohttp_server, kind)
    fleet = await start_fleet(WorkerSpec("evil", url=url, kind=kind), WorkerSpec("gpu1"), config_extra=CAPS)
    evil.routes[path] = evil.endless()
    evil.sent = 0
    _, growth = await peak_rss_growth(fleet.probe())
    assert evil.sent < SENT_BOUND, f"the probe read {evil.sent} bytes of an endless answer"
    assert growth < 64 * MIB, f"RSS grew {growth / MIB:.0f} MiB during one probe"
    worker = fleet.gateway.holder.current.worker("evil")
    assert not worker.up and "max_probe_kib" in worker.last_error, worker.last_error
    async with fleet.post("/api/chat", CHAT) as resp:
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu1"


async def test_a_whole_answer_declaring_more_than_the_cap_fails_over_before_any_byte(start_fleet, aiohttp_server):
    evil, url = await start_evil(aiohttp_server)
    evil.routes["/api/chat"] = body(b'{"message":{"content":"' + b"x" * (3 * MIB) + b'"},"done":true}')
    fleet = await start_fleet(WorkerSpec("evil", url=url), WorkerSpec("gpu1"), config_extra=CAPS)
    async with fleet.post("/api/chat", {**CHAT, "stream": False}) as resp:
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu1"
        assert (await resp.json())["done"] is True
    assert fleet.gateway.metrics.failovers.labels(reason="too_large")._value.get() == 1


@pytest.mark.parametrize(("kind", "upstream", "path", "request_body"), [
    ("llamacpp", "/v1/chat/completions", "/api/chat", {**CHAT, "stream": False}),  # translated to Ollama's shape
    ("openai", "/v1/embeddings", "/api/embed", {"model": MODEL, "input": "x"}),  # translated
    ("ollama", "/v1/chat/completions", "/v1/chat/completions", {"model": MODEL, "messages": CHAT["messages"]}),
])
async def test_an_answer_the_gateway_must_read_whole_fails_over_at_the_cap(
        start_fleet, aiohttp_server, kind, upstream, path, request_body):
    evil, url = await start_evil(aiohttp_server, kind)
    evil.routes[upstream] = evil.endless(b'{"choices":[{"message":{"content":"', b"x" * 65536)
    fleet = await start_fleet(WorkerSpec("evil", url=url, kind=kind), WorkerSpec("gpu1"), config_extra=CAPS)
    async with fleet.post(path, request_body) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Beacon-Worker"] == "gpu1"
    assert evil.sent < SENT_BOUND
    assert fleet.gateway.metrics.failovers.labels(reason="too_large")._value.get() == 1


async def test_only_oversized_answers_give_a_502_in_the_front_shape_naming_the_worker_and_the_cap(
        start_fleet, aiohttp_server):
    evil, url = await start_evil(aiohttp_server, "llamacpp")
    evil.routes["/v1/chat/completions"] = evil.endless(b'{"choices":[', b"x" * 65536)
    fleet = await start_fleet(WorkerSpec("evil", url=url, kind="llamacpp"), config_extra=CAPS)
    async with fleet.post("/api/chat", {**CHAT, "stream": False}) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "evil" in message and "max_answer_mib" in message and "127.0.0.1" not in message
    async with fleet.post("/v1/chat/completions", {"model": MODEL, "messages": CHAT["messages"]}) as resp:
        assert resp.status == 502
        assert "max_answer_mib" in (await resp.json())["error"]["message"]


async def test_a_large_passthrough_answer_streams_through_as_it_arrives_with_its_accounting(
        start_fleet, aiohttp_server):
    evil, url = await start_evil(aiohttp_server)
    content = b"y" * (MIB + MIB // 2)  # past what is held whole, under the cap
    answer = (b'{"model":"llama3.2:1b","message":{"role":"assistant","content":"' + content + b'"},'
              b'"done_reason":"stop","done":true,"total_duration":9000000,"load_duration":1000000,'
              b'"prompt_eval_count":2,"prompt_eval_duration":2000000,"eval_count":7,"eval_duration":5000000}')
    release = asyncio.Event()

    async def in_two_halves(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
        await resp.prepare(request)
        await resp.write(answer[:MIB + 4096])
        await release.wait()  # the rest only once the client has bytes: the gateway did not wait for it
        await resp.write(answer[MIB + 4096:])
        await resp.write_eof()
        return resp

    evil.routes["/api/chat"] = in_two_halves
    fleet = await start_fleet(WorkerSpec("evil", url=url), WorkerSpec("gpu1"), config_extra=CAPS)
    before = await tokens_generated(fleet)
    async with fleet.post("/api/chat", {**CHAT, "stream": False}) as resp:
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "evil"
        first = await asyncio.wait_for(resp.content.readexactly(MIB), 5)
        release.set()
        got = first + await resp.read()
    assert got == answer and orjson.loads(got)["eval_count"] == 7
    assert await tokens_generated(fleet) == before + 7


async def test_an_endless_passthrough_answer_is_cut_at_the_cap_and_the_client_sees_a_broken_body(
        start_fleet, aiohttp_server):
    evil, url = await start_evil(aiohttp_server)
    evil.routes["/api/chat"] = evil.endless(b'{"message":{"content":"', b"z" * 65536)
    fleet = await start_fleet(WorkerSpec("evil", url=url), WorkerSpec("gpu1"), config_extra=CAPS)
    received = 0
    with pytest.raises(aiohttp.ClientPayloadError):
        async with fleet.post("/api/chat", {**CHAT, "stream": False}) as resp:
            assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "evil"
            async for chunk in resp.content.iter_any():
                received += len(chunk)
    assert received <= 2 * MIB + 65536 and evil.sent < SENT_BOUND
    await still_serves(fleet)


@pytest.mark.parametrize("status", [200, 500])
async def test_an_endless_warm_up_answer_or_error_is_read_only_to_its_bound(start_fleet, aiohttp_server, status):
    evil, url = await start_evil(aiohttp_server)
    evil.routes["/api/generate"] = evil.endless(b'{"error":"', b"e" * 65536, status=status)
    fleet = await start_fleet(WorkerSpec("evil", url=url), config_extra=CAPS, admin_token=TOKEN)
    _, growth = await peak_rss_growth(warm_fails(fleet))
    assert evil.sent < SENT_BOUND and growth < 64 * MIB
    await still_serves(fleet)


async def warm_fails(fleet) -> None:
    async with fleet.post("/admin/workers/evil/warm", {"model": MODEL},
                          headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "evil" in message and "127.0.0.1" not in message


async def test_an_endless_progress_line_fails_the_pull_on_that_worker_naming_it(start_fleet, aiohttp_server):
    evil, url = await start_evil(aiohttp_server)
    evil.routes["/api/pull"] = evil.endless(b'{"status":"', b"p" * 65536, "application/x-ndjson")
    fleet = await start_fleet(WorkerSpec("evil", url=url), config_extra=CAPS)
    async with fleet.post("/api/pull", {"model": MODEL, "stream": False}) as resp:
        assert resp.status == 500, "failed on every worker: Ollama's status for a failed pull"
        message = (await resp.json())["error"]
    assert "evil" in message and "line" in message
    assert evil.sent < SENT_BOUND
    await still_serves(fleet)
