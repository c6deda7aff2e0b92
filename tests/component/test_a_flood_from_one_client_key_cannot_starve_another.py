"""When every copy of a model is busy, its queue is shared fairly between client keys: a key
flooding the gateway gets its weight's share of the slots that free up and its excess is refused
with 503 and Retry-After (never left to time out), while a light key is served within a slot or
two; a batch key takes only what interactive keys leave. One worker with one slot makes the
queue; request.done says whose request it was and its priority class."""

import asyncio

from structlog.testing import capture_logs

from gateway.access import hash_key
from tests.conftest import WorkerSpec

HEAVY, LIGHT, NIGHTLY = "heavy-key-0123456789abcdef", "light-key-0123456789abcdef", "nightly-key-0123456789abc"
CONFIG = f"""
[admission]
max_queue = 6
queue_timeout_s = 30
[[clients]]
name = "heavy"
key_sha256 = "{hash_key(HEAVY)}"
[[clients]]
name = "light"
key_sha256 = "{hash_key(LIGHT)}"
[[clients]]
name = "nightly"
key_sha256 = "{hash_key(NIGHTLY)}"
priority = "batch"
"""
ONE_SLOT = WorkerSpec("gpu0", tokens_per_s=200, extra_toml="max_inflight = 1\n")


async def generate(fleet, key: str, done: list, label: str):
    body = {"model": "llama3.2:1b", "prompt": "x", "stream": False, "options": {"num_predict": 8}}
    async with fleet.post("/api/generate", body, headers={"Authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        if resp.status == 200:
            done.append(label)
        return resp.status, resp.headers.get("Retry-After")


async def test_a_light_key_is_served_through_a_flood_and_the_flood_is_refused_not_timed_out(start_fleet):
    fleet = await start_fleet(ONE_SLOT, config_extra=CONFIG)
    done: list[str] = []
    assert (await generate(fleet, LIGHT, [], "warm"))[0] == 200  # the model is resident: the queue is slots only
    with capture_logs() as logs:
        flood = [asyncio.create_task(generate(fleet, HEAVY, done, "heavy")) for _ in range(20)]
        await asyncio.sleep(0.05)  # the flood holds the slot and fills the queue
        light = [asyncio.create_task(generate(fleet, LIGHT, done, f"light{i}")) for i in range(3)]
        heavy_results, light_results = await asyncio.gather(*flood), await asyncio.gather(*light)
    assert [status for status, _ in light_results] == [200, 200, 200]  # the light key's success rate is 100%
    refused = [(s, r) for s, r in heavy_results if s != 200]
    assert refused and all(s == 503 and r == "2" for s, r in refused)  # the excess: 503 + Retry-After, at once
    # FIFO would have put the light key behind every queued heavy request; fair share alternates.
    for i in range(3):
        assert done.index(f"light{i}") <= 2 * (i + 1) + 1, done
    lines = [e for e in logs if e["event"] == "request.done" and e["status"] == 200]
    assert {(e["client"], e["priority"]) for e in lines} == {("heavy", "interactive"), ("light", "interactive")}
    assert fleet.gateway.admission.depth("llama3.2:1b") == 0


async def test_a_batch_key_waits_behind_interactive_requests(start_fleet):
    fleet = await start_fleet(ONE_SLOT, config_extra=CONFIG)
    done: list[str] = []
    assert (await generate(fleet, LIGHT, [], "warm"))[0] == 200
    with capture_logs() as logs:
        batch = [asyncio.create_task(generate(fleet, NIGHTLY, done, f"batch{i}")) for i in range(4)]
        await asyncio.sleep(0.05)  # one batch request holds the slot, three wait
        light = [asyncio.create_task(generate(fleet, LIGHT, done, f"light{i}")) for i in range(2)]
        results = await asyncio.gather(*batch, *light)
    assert [status for status, _ in results] == [200] * 6
    # Both interactive requests go ahead of every batch request still waiting when they came.
    assert done.index("light1") < done.index("batch2") < done.index("batch3"), done
    priorities = {e["client"]: e["priority"] for e in logs if e["event"] == "request.done"}
    assert priorities == {"nightly": "batch", "light": "interactive"}
    text = await (await fleet.http.get(fleet.url + "/metrics")).text()
    assert 'beacon_queue_wait_seconds_count{priority="batch",result="admitted"}' in text
