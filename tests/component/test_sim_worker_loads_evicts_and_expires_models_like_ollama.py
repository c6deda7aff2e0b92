"""The simulated worker keeps models resident as Ollama's scheduler does: loads on demand, one at a
time, evicts the idle model whose keep-alive ends soonest, waits for busy ones, expires idle ones."""

import asyncio
from datetime import datetime
from functools import partial

import pytest

from local_workers.sim import parse_models

GIB = 1024**3


@pytest.fixture
def sim(start_sim):
    return partial(start_sim, models="a:1b=3GiB,b:1b=3GiB,c:1b=3GiB", vram_bytes=8 * GIB)


async def gen(client, model, **extra):
    resp = await client.post("/api/generate", json={"model": model, "prompt": "x", "stream": False, **extra})
    return resp.status, await resp.json()


async def ps(client) -> dict:
    return {m["name"]: m for m in (await (await client.get("/api/ps")).json())["models"]}


async def until(condition, timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_a_model_loads_on_first_use_only_and_says_how_long_it_took(sim):
    worker, client = await sim(load_s_per_gib=0.05)
    assert await ps(client) == {}
    _, first = await gen(client, "a:1b")
    _, second = await gen(client, "a:1b")
    assert first["load_duration"] >= 0.15e9 and second["load_duration"] == 0
    assert worker.stats.loads == ["a:1b"]
    resident = (await ps(client))["a:1b"]
    assert resident["size"] == resident["size_vram"] == 3 * GIB and resident["context_length"] == 4096
    assert datetime.fromisoformat(resident["expires_at"]).utcoffset() is not None


async def test_the_idle_model_whose_keep_alive_ends_soonest_is_evicted(sim):
    worker, client = await sim()
    await gen(client, "a:1b", keep_alive="10m")
    await gen(client, "b:1b", keep_alive="1m")
    status, body = await gen(client, "c:1b")  # 9 GiB do not fit in 8: one must go
    assert status == 200 and body["load_duration"] > 0
    assert worker.stats.evictions == ["b:1b"] and worker.stats.unloads == ["b:1b"]
    assert set(await ps(client)) == {"a:1b", "c:1b"}


async def test_a_load_waits_for_a_busy_model_which_takes_no_new_requests_meanwhile(sim):
    worker, client = await sim(vram_bytes=4 * GIB, tokens_per_s=100)
    first_a = asyncio.create_task(gen(client, "a:1b", options={"num_predict": 40}))
    await until(lambda: worker.active)
    b = asyncio.create_task(gen(client, "b:1b", options={"num_predict": 1}))
    await until(lambda: worker.loaded["a:1b"].draining)
    second_a = asyncio.create_task(gen(client, "a:1b", options={"num_predict": 1}))
    await until(lambda: worker.queued == 2)
    assert not b.done() and worker.active == 1
    assert [(await t)[0] for t in (first_a, b, second_a)] == [200, 200, 200]
    assert worker.stats.loads == ["a:1b", "b:1b", "a:1b"], "b was not starved by later requests for a"
    assert worker.stats.evictions == ["a:1b", "b:1b"]


async def test_loads_happen_one_at_a_time(sim):
    worker, client = await sim(models=parse_models("a:1b=1GiB,b:1b=1GiB"), load_s_per_gib=0.15)
    (_, one), (_, two) = await asyncio.gather(gen(client, "a:1b"), gen(client, "b:1b"))
    first, second = sorted([one["load_duration"], two["load_duration"]])
    assert first >= 0.14e9 and second >= 0.28e9, "the second load started when the first ended"
    assert sorted(worker.stats.loads) == ["a:1b", "b:1b"]


async def test_a_model_being_loaded_is_already_listed_as_ollama_lists_a_starting_runner(sim):
    worker, client = await sim(load_s_per_gib=0.1)
    pending = asyncio.create_task(gen(client, "a:1b"))
    await until(lambda: "a:1b" in worker.loaded)
    assert "a:1b" in await ps(client) and worker.stats.loads == []
    await pending
    assert worker.stats.loads == ["a:1b"]


async def test_a_model_larger_than_vram_loads_partly_and_decodes_slower(sim):
    worker, client = await sim(vram_bytes=2 * GIB, tokens_per_s=1000)
    _, body = await gen(client, "a:1b", options={"num_predict": 4})
    resident = (await ps(client))["a:1b"]
    assert resident["size_vram"] == 2 * GIB < resident["size"]
    assert body["eval_duration"] > 4 / 1000 * 1e9 * 5, "a third on the CPU costs far more than a third"


async def test_a_cpu_worker_has_no_vram_only_a_count_of_loaded_models(sim):
    worker, client = await sim(tier="cpu", max_loaded_models=2, vram_bytes=1 * GIB)
    for model in ("a:1b", "b:1b", "c:1b"):
        assert (await gen(client, model))[0] == 200
    resident = await ps(client)
    assert set(resident) == {"b:1b", "c:1b"} and worker.stats.evictions == ["a:1b"]
    assert all(m["size_vram"] == 0 and m["size"] == 3 * GIB for m in resident.values())


async def test_an_empty_prompt_loads_and_keep_alive_zero_unloads(sim):
    worker, client = await sim()
    status, body = await gen(client, "a:1b", prompt="")
    assert status == 200 and body["done_reason"] == "load" and body["response"] == "" and body["done"] is True
    assert "a:1b" in worker.loaded and worker.stats.completed == 0
    resp = await client.post("/api/chat", json={"model": "a:1b", "keep_alive": 0})
    body = await resp.json()
    assert body["done_reason"] == "unload" and body["message"] == {"role": "assistant", "content": ""}
    assert "a:1b" not in worker.loaded
    await gen(client, "b:1b", prompt="", keep_alive=0)
    assert worker.stats.loads == ["a:1b"], "unloading a model that is not loaded does not load it"
    await gen(client, "a:1b", keep_alive="0s")
    assert "a:1b" not in worker.loaded, "keep_alive 0 unloads right after answering"


async def test_idle_models_expire_when_their_keep_alive_runs_out(sim):
    worker, client = await sim()
    await gen(client, "a:1b", keep_alive="50ms")
    await gen(client, "b:1b", keep_alive="10m")
    await until(lambda: "a:1b" not in worker.loaded)
    assert set(worker.loaded) == {"b:1b"} and worker.stats.unloads == ["a:1b"] and worker.stats.evictions == []


async def test_each_request_re_arms_the_keep_alive_and_the_latest_one_sets_it(sim):
    worker, client = await sim()
    await gen(client, "a:1b", keep_alive="10m")
    before = datetime.fromisoformat((await ps(client))["a:1b"]["expires_at"])
    await gen(client, "a:1b", keep_alive="20m")
    after = datetime.fromisoformat((await ps(client))["a:1b"]["expires_at"])
    assert 590 < (after - before).total_seconds() < 610
    await gen(client, "a:1b", keep_alive="30ms")
    await until(lambda: "a:1b" not in worker.loaded)


async def test_keep_alive_forever_and_keep_alive_ollama_would_refuse(sim):
    worker, client = await sim()
    await gen(client, "a:1b", keep_alive=-1)
    assert datetime.fromisoformat((await ps(client))["a:1b"]["expires_at"]).year > 2250
    status, body = await gen(client, "a:1b", keep_alive="300")
    assert status == 400 and body == {"error": 'time: missing unit in duration "300"'}


async def test_the_state_endpoint_reports_what_happened(sim):
    worker, client = await sim(vram_bytes=4 * GIB)
    await gen(client, "a:1b")
    await gen(client, "b:1b")
    await client.get("/api/ps")
    state = await (await client.get("/_sim/state")).json()
    assert state["loads"] == ["a:1b", "b:1b"] and state["evictions"] == ["a:1b"] == state["unloads"]
    assert state["resident"] == {"b:1b": {"active": 0, "size_vram": 3 * GIB, "loading": False, "draining": False}}
    assert state["requests"] == {"/api/generate": 2, "/api/ps": 1}, "the control endpoints are not counted"
    assert (state["active"], state["queued"], state["completed"], state["cancelled"]) == (0, 0, 2, 0)
    assert state["loads"] == worker.stats.loads and state["completed"] == worker.stats.completed
