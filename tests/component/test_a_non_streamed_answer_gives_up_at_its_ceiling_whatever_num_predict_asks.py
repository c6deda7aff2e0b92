"""A non-streamed answer's first byte is its whole answer, so its timeout grows with num_predict;
[server] max_answer_s caps that growth: past it a hung worker is given up on (its slot freed) and
the next one tried, or the client gets 504 naming the ceiling. Small settings keep this quick."""

import asyncio
import time

from tests.conftest import WorkerSpec

CEILING = """
[failover]
first_byte_timeout_s = 0.5
connect_timeout_s = 0.5
[cpu]
tokens_per_s = 0.01
[server]
max_answer_s = 1
"""
MESSAGES = [{"role": "user", "content": "tell me everything"}]


async def chat(fleet, num_predict: int, wait_s: float = 15.0):
    body = {"model": "llama3.2:1b", "messages": MESSAGES, "stream": False, "options": {"num_predict": num_predict}}
    started = time.monotonic()
    async with asyncio.timeout(wait_s):  # the bug this guards: without a ceiling, this waits for days
        async with fleet.post("/api/chat", body) as resp:
            return resp.status, resp.headers.get("X-Beacon-Worker"), await resp.json(), time.monotonic() - started


async def test_every_worker_hung_on_a_huge_num_predict_gives_504_at_the_ceiling(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra=CEILING)
    for worker in fleet.workers.values():
        worker.set_mode("hang")  # never unhung: the sim would then really generate a million tokens
    status, _, body, took_s = await chat(fleet, 10**6)  # 10^6 tokens at 0.01 tokens/s: 3 years allowed before
    assert status == 504 and took_s < 5
    assert "max_answer_s" in body["error"] and "gpu0" in body["error"] and "gpu1" in body["error"]
    assert fleet.gateway.inflight.get("gpu0") == 0 and fleet.gateway.inflight.get("gpu1") == 0  # slots freed


async def test_a_hung_worker_is_given_up_on_at_the_ceiling_and_the_next_serves(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), WorkerSpec("gpu1"), config_extra=CEILING)
    status, first, _, _ = await chat(fleet, 3)  # three tokens teach no decode rate: the 0.01/s guess stays
    assert status == 200
    await fleet.probe()  # the model is resident there now: the router (and affinity) send the next one there too
    fleet.workers[first].set_mode("hang")
    status, served, body, took_s = await chat(fleet, 3)  # allowance 3 / 0.01 = 300 s, capped at 1 s
    assert status == 200 and served != first and body["done"] is True
    assert took_s < 5
    assert fleet.gateway.metrics.failovers.labels(reason="timeout")._value.get() == 1
    assert fleet.gateway.inflight.get(first) == 0
    fleet.workers[first].set_mode("ok")
