"""The simulated worker's failure modes switch while it runs, from Python or over HTTP: hang, error,
drop, malformed, slow and gpu_lost each fail the way a real worker in that state does."""

import asyncio
import time
from functools import partial

import aiohttp
import orjson
import pytest

GIB = 1024**3
FAILURE = {"error": "simulated failure"}


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=1GiB")


def generate(client, stream: bool = False, tokens: int = 8):
    body = {"model": "a:1b", "prompt": "x", "stream": stream, "options": {"num_predict": tokens}}
    return client.post("/api/generate", json=body)


async def test_modes_switch_over_http_and_unknown_modes_are_refused(sim):
    worker, client = await sim()
    resp = await client.post("/_sim/mode", json={"mode": "slow"})
    assert (resp.status, await resp.json()) == (200, {"mode": "slow"}) and worker.mode == "slow"
    resp = await client.post("/_sim/mode", json={"mode": "sideways"})
    assert resp.status == 400 and "sideways" in (await resp.json())["error"] and worker.mode == "slow"
    state = await (await client.get("/_sim/state")).json()
    assert state["mode"] == "slow" and state["name"] == "sim" and state["tier"] == "gpu"
    with pytest.raises(ValueError):
        worker.set_mode("sideways")


async def test_error_fails_inference_and_model_endpoints_but_listings_still_answer(sim):
    worker, client = await sim()
    worker.set_mode("error")
    for method, path, body in (("POST", "/api/generate", {"model": "a:1b", "prompt": "x"}),
                               ("POST", "/api/chat", {"model": "a:1b", "messages": []}),
                               ("POST", "/api/embed", {"model": "a:1b", "input": "x"}),
                               ("POST", "/api/show", {"model": "a:1b"}), ("POST", "/api/pull", {"model": "a:1b"}),
                               ("DELETE", "/api/delete", {"model": "a:1b"})):
        resp = await client.request(method, path, json=body)
        assert (resp.status, await resp.json()) == (500, FAILURE), path
    for path in ("/", "/api/version", "/api/tags", "/api/ps"):
        assert (await client.get(path)).status == 200, path
    resp = await client.post("/v1/chat/completions", json={"model": "a:1b", "messages": [{"role": "user"}]})
    assert resp.status == 500 and (await resp.json())["error"]["message"] == "simulated failure"
    worker.set_mode("ok")
    assert (await generate(client)).status == 200 and worker.find("a:1b") is not None


async def test_error_after_a_stream_started_ends_it_with_one_error_line(sim):
    worker, client = await sim(tokens_per_s=100)
    resp = await generate(client, stream=True, tokens=50)
    first = orjson.loads(await resp.content.readline())
    worker.set_mode("error")
    rest = [orjson.loads(line) for line in (await resp.read()).splitlines()]
    assert first["done"] is False and rest[-1] == FAILURE and not any(x.get("done") for x in rest)


async def test_hang_accepts_every_request_and_answers_none_until_it_ends(sim):
    worker, client = await sim()
    worker.set_mode("hang")
    pending = [asyncio.create_task(client.get(path)) for path in ("/", "/api/ps", "/api/tags")]
    pending.append(asyncio.create_task(generate(client)))
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in pending)
    assert (await client.get("/_sim/state")).status == 200, "the control endpoints never hang"
    await client.post("/_sim/mode", json={"mode": "ok"})
    assert [(await task).status for task in pending] == [200, 200, 200, 200]


async def test_hang_stalls_a_stream_that_already_started(sim):
    worker, client = await sim(tokens_per_s=200)
    resp = await generate(client, stream=True, tokens=30)
    await resp.content.readline()
    worker.set_mode("hang")
    await asyncio.sleep(0.05)
    sent = worker.stats.completed
    read = asyncio.create_task(resp.read())
    await asyncio.sleep(0.1)
    assert not read.done() and sent == 0
    worker.set_mode("ok")
    assert orjson.loads((await read).splitlines()[-1])["done"] is True


async def test_drop_cuts_a_stream_after_a_few_tokens_and_a_whole_answer_before_any_byte(sim):
    worker, client = await sim()
    worker.set_mode("drop")
    resp = await generate(client, stream=True, tokens=20)
    assert resp.status == 200
    tokens = [await resp.content.readline() for _ in range(2)]
    assert all(orjson.loads(t)["done"] is False for t in tokens)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await generate(client)
    assert worker.stats.dropped == 2 and worker.stats.completed == 0 and worker.stats.cancelled == 0
    assert worker.active == 0, "the dropped generations gave their slots back"


async def test_malformed_answers_are_not_json(sim):
    worker, client = await sim()
    worker.set_mode("malformed")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(await (await generate(client)).read())
    lines = (await (await generate(client, stream=True, tokens=3)).read()).splitlines()
    assert len(lines) == 4
    for line in lines:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(line)
    resp = await client.post("/api/embed", json={"model": "a:1b", "input": "x"})
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(await resp.read())


async def test_slow_decodes_twenty_times_slower(sim):
    worker, client = await sim(tokens_per_s=2000)
    fast = await (await generate(client, tokens=10)).json()
    worker.set_mode("slow")
    began = time.monotonic()
    slow = await (await generate(client, tokens=10)).json()
    assert slow["eval_duration"] == 20 * fast["eval_duration"]
    assert time.monotonic() - began >= 10 / 100 - 0.01, "and it really took that long"


async def test_gpu_lost_shows_no_vram_in_ps_and_decodes_at_cpu_speed(sim):
    worker, client = await sim(tokens_per_s=2000)
    fast = await (await generate(client, tokens=4)).json()
    worker.set_mode("gpu_lost")
    slow = await (await generate(client, tokens=4)).json()
    model = (await (await client.get("/api/ps")).json())["models"][0]
    assert model["size_vram"] == 0 and model["size"] == GIB
    assert slow["eval_duration"] == 20 * fast["eval_duration"]
    worker.set_mode("ok")
    assert (await (await client.get("/api/ps")).json())["models"][0]["size_vram"] == GIB
