"""A chat or generate's token budget is read once, by the front, and the plan and the timeout both
use it. As in Ollama, num_predict 0 and the negative values set no limit (so the gateway plans for
[routing] default_num_predict), a fractional number counts as its integer part, and a value that is
no number is refused before any worker is asked. The CPU tier's admission makes the budget visible:
it takes only what it can finish within [cpu] max_expected_s."""

from tests.conftest import WorkerSpec

CPU_ONLY = """
[routing]
default_num_predict = 2000
[cpu]
tokens_per_s = 20
max_expected_s = 30
"""


async def generate(fleet, num_predict):
    body = {"model": "llama3.2:1b", "prompt": "x", "stream": False, "options": {"num_predict": num_predict}}
    async with fleet.post("/api/generate", body) as resp:
        return resp.status, await resp.json()


async def test_no_limit_plans_for_the_default_budget_and_a_small_one_is_served(start_fleet):
    fleet = await start_fleet(WorkerSpec("cpu0", tier="cpu"), config_extra=CPU_ONLY)
    for unlimited in (0, -1, -2):  # 2000 tokens at 20/s is 100 s: more than the CPU tier takes
        status, body = await generate(fleet, unlimited)
        assert status == 503, (unlimited, body)
        assert "asks for 2000" in body["error"]
    status, body = await generate(fleet, 40)
    assert status == 200 and body["done"] is True
    status, body = await generate(fleet, 40.9)  # Go's decoding: the integer part, 40 tokens
    assert status == 200 and body["done"] is True


async def test_a_budget_that_is_no_number_is_a_400_and_reaches_no_worker(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    before = sum(fleet.workers["gpu0"].stats.requests.values())
    for bad in (True, "100", [100], {"n": 1}):
        status, body = await generate(fleet, bad)
        assert status == 400, (bad, body)
        assert body == {"error": 'option "num_predict" must be of type integer'}
    assert sum(fleet.workers["gpu0"].stats.requests.values()) == before
    status, body = await generate(fleet, 3)
    assert status == 200 and body["done"] is True  # and the gateway keeps serving
