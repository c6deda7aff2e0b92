import asyncio

import pytest

from tests.conftest import WorkerSpec

GOOD = {"model": "llama3.2:1b", "prompt": "x", "stream": False, "options": {"num_predict": 2}}

CASES = [
    # (method, path, raw body, status, words the error must contain)
    ("POST", "/api/generate", b"{not json", 400, "invalid JSON"),
    ("POST", "/api/generate", b"[1, 2, 3]", 400, "must be a JSON object"),
    ("POST", "/api/generate", b"", 400, "missing request body"),
    ("POST", "/api/generate", b'{"prompt": "x"}', 400, "model is required"),
    ("POST", "/api/chat", b'{"model": 42}', 400, "model must be a string"),
    ("POST", "/api/chat", b'{"model": "bad\\u0000name"}', 400, "invalid model name"),
    ("POST", "/api/generate", b'{"model": "ll\xff\xfe"}', 400, "not valid UTF-8"),
    ("POST", "/api/generate", b'{"model": "no-such-model"}', 404, 'model "no-such-model" not found'),
    ("POST", "/api/embed", b'{"model": "nope:7b", "input": "x"}', 404, "not found"),
    ("GET", "/api/nonexistent", b"", 404, "not found"),
    ("GET", "/api/chat", b"", 405, "not allowed"),
    ("DELETE", "/api/tags", b"", 405, "not allowed"),
]


async def good_request_succeeds(fleet):
    async with fleet.post("/api/generate", GOOD) as resp:
        assert resp.status == 200
        assert (await resp.json())["done"] is True


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), CASES)
async def test_bad_request_then_a_good_one(start_fleet, method, path, body, status, words):
    fleet = await start_fleet(WorkerSpec("gpu0"))
    async with fleet.http.request(method, fleet.url + path, data=body,
                                  headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
    assert isinstance(error, str) and words in error
    await good_request_succeeds(fleet)


async def test_a_body_over_the_limit_is_413_and_the_next_request_works(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nmax_body_mib = 0.01\n")
    big = {"model": "llama3.2:1b", "prompt": "x" * 20000}
    async with fleet.post("/api/generate", big) as resp:
        assert resp.status == 413
        assert "over the 10485 byte limit" in (await resp.json())["error"]
    await good_request_succeeds(fleet)


async def test_nothing_able_to_serve_is_503_with_retry_after(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nretry_after_s = 7\n")
    await fleet.stop_worker("gpu0")
    async with fleet.post("/api/generate", GOOD) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert "no worker can serve" in (await resp.json())["error"]


async def test_a_full_fleet_queues_then_answers_503_with_retry_after(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=20, extra_toml="max_inflight = 1\n"),
                              config_extra="[admission]\nmax_queue = 1\nqueue_timeout_s = 0.3\n")
    slow = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 200}}
    first = await fleet.post("/api/generate", slow)
    await first.content.readline()  # the only slot is now busy
    waiting = asyncio.create_task(fleet.http.post(fleet.url + "/api/generate", json=GOOD))
    while fleet.gateway.admission.depth("llama3.2:1b") == 0:
        await asyncio.sleep(0.005)
    async with fleet.post("/api/generate", GOOD) as resp:  # the queue (max 1) is full: refused at once
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        assert "max_queue 1" in (await resp.json())["error"]
    async with await waiting as resp:  # the queued request gave up after queue_timeout_s
        assert resp.status == 503 and "Retry-After" in resp.headers
        assert "stayed busy for 0.3s" in (await resp.json())["error"]
    first.close()
    assert fleet.gateway.admission.depth("llama3.2:1b") == 0


async def test_a_queued_request_is_served_when_a_slot_frees(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=200, extra_toml="max_inflight = 1\n"))
    slow = {"model": "llama3.2:1b", "prompt": "x", "options": {"num_predict": 20}}
    first = await fleet.post("/api/generate", slow)
    await first.content.readline()
    async with fleet.post("/api/generate", GOOD) as resp:
        assert resp.status == 200 and (await resp.json())["done"] is True
    first.close()
