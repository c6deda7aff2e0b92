"""/v1 requests take the Ollama API's path: routing, failover before the first byte, SSE relayed as
it comes, a stream cut by the worker ended with one SSE error event, metrics and one request.done."""

import asyncio

import orjson
from structlog.testing import capture_logs

from tests.conftest import WorkerSpec

CHAT = "/v1/chat/completions"
ASK = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


def events(raw: bytes) -> list:
    """The data of every SSE event, each a whole event (`data: ...` then a blank line)."""
    assert raw.endswith(b"\n\n")
    out = []
    for event in raw.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        payload = event[6:]
        out.append(payload.decode() if payload == b"[DONE]" else orjson.loads(payload))
    return out


async def test_a_stream_cut_by_the_worker_ends_with_one_sse_error_event(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    for worker in fleet.workers.values():
        worker.set_mode("drop")
    async with fleet.post(CHAT, {**ASK, "stream": True}) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        got = events(await resp.read())
    assert got[0]["choices"][0]["delta"]["content"], "the tokens before the cut reached the client"
    assert "failed mid-stream" in got[-1]["error"]["message"] and got[-1]["error"]["type"] == "api_error"
    assert sum("error" in e for e in got if isinstance(e, dict)) == 1 and "[DONE]" not in got


async def test_a_worker_error_event_mid_stream_is_passed_on_once(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.post(CHAT, {**ASK, "stream": True}) as resp:
        first = await resp.content.readuntil(b"\n\n")
        fleet.workers["gpu0"].set_mode("error")
        got = events(first + await resp.read())
    assert got[-1]["error"]["message"] == "simulated failure" and "[DONE]" not in got
    assert sum("error" in e for e in got if isinstance(e, dict)) == 1


async def test_a_failing_worker_is_skipped_before_the_first_byte(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    fleet.workers["gpu0"].set_mode("error")
    for stream in (False, True, False, True):
        async with fleet.post(CHAT, {**ASK, "max_tokens": 3, "stream": stream}) as resp:
            assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu1"
            body = await resp.read()
        assert (events(body)[-1] == "[DONE]") if stream else orjson.loads(body)["choices"]
    await fleet.stop_worker("gpu1")
    fleet.workers["gpu0"].set_mode("ok")
    async with fleet.post("/v1/completions", {"model": "llama3.2:1b", "prompt": "x", "max_tokens": 2}) as resp:
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu0"


async def test_every_worker_failing_is_502_openai_shaped(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"))
    for worker in fleet.workers.values():
        worker.set_mode("error")
    async with fleet.post(CHAT, ASK) as resp:
        assert resp.status == 502
        assert "every worker failed" in (await resp.json())["error"]["message"]


async def test_tokens_are_relayed_as_they_come_not_buffered(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=20))
    resp = await fleet.post(CHAT, {**ASK, "max_tokens": 1000, "stream": True})
    first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
    assert orjson.loads(first[6:])["choices"][0]["delta"]["content"]
    resp.close()
    worker = fleet.workers["gpu0"]
    for _ in range(200):
        if worker.stats.cancelled:
            break
        await asyncio.sleep(0.01)
    assert worker.stats.cancelled == 1, "a client that goes away stops the generation on the worker"
    assert fleet.gateway.inflight.get("gpu0") == 0


async def test_requests_are_counted_under_their_v1_endpoint_with_one_done_line(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1.3GiB,all-minilm:latest=0.05GiB"))
    with capture_logs() as logs:
        async with fleet.post(CHAT, {**ASK, "max_tokens": 3, "stream": True,
                                     "stream_options": {"include_usage": True}}) as resp:
            await resp.read()
        async with fleet.post("/v1/embeddings", {"model": "all-minilm", "input": "x"}) as resp:
            await resp.read()
        async with fleet.post(CHAT, {**ASK, "model": "nope"}) as resp:
            await resp.read()
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["endpoint"], e["outcome"], e["status"]) for e in done] == [
        (CHAT, "ok", 200), ("/v1/embeddings", "ok", 200), (CHAT, "not_found", 404)]
    assert done[0]["tokens"] == 3 and done[0]["worker"] == "gpu0" and done[0]["reason"]
    async with fleet.get("/metrics") as resp:
        text = await resp.text()
    assert f'beacon_requests_total{{endpoint="{CHAT}",model="llama3.2:1b",outcome="ok",worker="gpu0"}} 1.0' in text
    assert 'endpoint="/v1/embeddings",model="all-minilm:latest",outcome="ok",worker="gpu0"} 1.0' in text
