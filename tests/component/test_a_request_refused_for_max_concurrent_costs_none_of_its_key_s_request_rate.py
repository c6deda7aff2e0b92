"""A key's requests_per_minute counts the requests it let in: one refused at the door for
max_concurrent (or for the rate itself) costs nothing, while one let in counts even if its body
is then refused (400) or names a model the key may not use (403): reading and judging it was
work, and a loop of bad requests must not be free."""

import asyncio

from gateway.access import hash_key
from tests.conftest import WorkerSpec

KEY = "one-at-a-time-0123456789abcdef"
CLIENTS = f"""
[[clients]]
name = "single"
key_sha256 = "{hash_key(KEY)}"
models = ["llama3.2:*"]
max_concurrent = 1
requests_per_minute = 4
"""
AUTH = {"Authorization": f"Bearer {KEY}"}


async def generate(fleet, body: object, **options) -> tuple[int, str]:
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with fleet.http.post(fleet.url + "/api/generate", headers=AUTH, **kwargs) as resp:
        return resp.status, (await resp.json())["error"] if resp.status != 200 else ""


def ask(model: str = "llama3.2:1b", num_predict: int = 1) -> dict:
    return {"model": model, "prompt": "x", "stream": False, "options": {"num_predict": num_predict}}


async def test_refusals_for_max_concurrent_leave_the_rate_budget_whole(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", models="llama3.2:1b=1.3GiB,qwen2:0.5b=0.5GiB", tokens_per_s=50),
                              config_extra=CLIENTS)
    slow = asyncio.create_task(generate(fleet, ask(num_predict=40)))  # 1 of 4
    for _ in range(200):  # wait for the request itself, not for the control loop
        if fleet.gateway.inflight.get("gpu0"):
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        status, error = await generate(fleet, ask())
        assert status == 429 and "max_concurrent 1" in error
    assert await slow == (200, "")
    status, error = await generate(fleet, b'{"model": "llama3.2:1b", "prompt": ')  # 2 of 4: read, then refused
    assert status == 400 and "invalid JSON" in error
    status, error = await generate(fleet, ask("qwen2:0.5b"))  # 3 of 4
    assert status == 403 and "may not use model" in error
    assert await generate(fleet, ask()) == (200, "")  # 4 of 4
    status, error = await generate(fleet, ask())
    assert status == 429 and "over its 4 requests per minute" in error
