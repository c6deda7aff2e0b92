"""Every error a /v1 client sees is OpenAI-shaped {"error": {"message", "type", "code"}} with the
status Ollama's own /v1 would use, whether the gateway, aiohttp or a worker said it; never a 500."""

import asyncio

import pytest

from tests.conftest import WorkerSpec

GOOD = {"model": "llama3.2:1b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
CHAT = "/v1/chat/completions"


async def openai_error(resp, status: int) -> dict:
    assert resp.status == status and resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert isinstance(error["message"], str) and error["message"] and error["type"] and error["code"] == status
    return error


async def good_request_succeeds(fleet) -> None:
    async with fleet.post(CHAT, GOOD) as resp:
        assert resp.status == 200 and (await resp.json())["choices"][0]["message"]["content"]


@pytest.fixture
async def fleet(start_fleet):
    return await start_fleet(WorkerSpec("gpu0", "llama3.2:1b=1.3GiB,all-minilm:latest=0.05GiB"))


@pytest.mark.parametrize(("path", "body", "words"), [
    (CHAT, b"", "missing request body"),
    (CHAT, b"{nope", "invalid JSON"),
    (CHAT, b"[1, 2]", "must be a JSON object"),
    (CHAT, b'{"messages": [{"role": "user", "content": "x"}]}', "model is required"),
    (CHAT, b'{"model": 7, "messages": []}', "model must be a string"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": "hi"}', "messages must be a non-empty list"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [7]}', "messages[0] must be an object"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "robot", "content": "x"}]}', "messages[0].role"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "n": 0}', "n must be a positive integer"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "max_tokens": "9"}', "max_tokens must be"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "stop": [1]}', "stop must be"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "stream": "yes"}', "stream must be"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "stream_options": {"include_usage": true}}',
     "only allowed when stream is true"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "tools": [{"type": "function"}]}',
     "tools[0] must be an object with function.name"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "response_format": {"type": "yaml"}}',
     "response_format.type"),
    (CHAT, b'{"model": "llama3.2:1b", "messages": [{"role": "user"}], "n": 3}', "n = 3 is not supported"),
    (CHAT, b'{"model": "\\u0000", "messages": [{"role": "user"}]}', "invalid model name"),
    ("/v1/completions", b'{"model": "llama3.2:1b"}', "prompt must be"),
    ("/v1/completions", b'{"model": "llama3.2:1b", "prompt": [true]}', "prompt must be"),
    ("/v1/embeddings", b'{"model": "all-minilm", "input": []}', "input must be"),
    ("/v1/embeddings", b'{"model": "all-minilm", "input": "x", "encoding_format": "hex"}', "encoding_format"),
])
async def test_bad_input_is_400_openai_shaped_and_the_gateway_keeps_serving(fleet, path, body, words):
    async with fleet.http.post(fleet.url + path, data=body, headers={"Content-Type": "application/json"}) as resp:
        error = await openai_error(resp, 400)
    assert words in error["message"] and error["type"] == "invalid_request_error"
    await good_request_succeeds(fleet)


async def test_unknown_model_is_404_on_every_endpoint(fleet):
    for path, body in ((CHAT, {**GOOD, "model": "nope"}), ("/v1/completions", {"model": "nope", "prompt": "x"}),
                       ("/v1/embeddings", {"model": "nope", "input": "x"})):
        async with fleet.post(path, body) as resp:
            assert "not found" in (await openai_error(resp, 404))["message"]
    async with fleet.get("/v1/models/nope") as resp:
        await openai_error(resp, 404)


async def test_aiohttps_own_404_and_405_are_openai_shaped_too(fleet):
    async with fleet.get(CHAT) as resp:
        assert "GET is not allowed" in (await openai_error(resp, 405))["message"]
    async with fleet.post("/v1/assistants", {}) as resp:
        await openai_error(resp, 404)


async def test_a_body_over_the_limit_is_413(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nmax_body_mib = 0.01\n")
    async with fleet.post(CHAT, {**GOOD, "messages": [{"role": "user", "content": "x" * 20000}]}) as resp:
        await openai_error(resp, 413)
    await good_request_succeeds(fleet)


async def test_nothing_able_to_serve_is_503_with_retry_after(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0"), config_extra="[server]\nretry_after_s = 7\n")
    await fleet.stop_worker("gpu0")
    async with fleet.post(CHAT, GOOD) as resp:
        assert resp.headers["Retry-After"] == "7"
        assert "no worker can serve" in (await openai_error(resp, 503))["message"]


async def test_a_full_queue_is_503_with_retry_after(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", tokens_per_s=20, extra_toml="max_inflight = 1\n"),
                              config_extra="[admission]\nmax_queue = 1\nqueue_timeout_s = 0.3\n")
    first = await fleet.post(CHAT, {**GOOD, "max_tokens": 200, "stream": True})
    await first.content.readline()  # the only slot is now busy
    waiting = asyncio.create_task(fleet.http.post(fleet.url + CHAT, json=GOOD))
    while fleet.gateway.admission.depth("llama3.2:1b") == 0:
        await asyncio.sleep(0.005)
    async with fleet.post(CHAT, GOOD) as resp:
        assert resp.headers["Retry-After"] == "2" and "max_queue 1" in (await openai_error(resp, 503))["message"]
    async with await waiting as resp:
        assert "Retry-After" in resp.headers and "stayed busy" in (await openai_error(resp, 503))["message"]
    first.close()


async def test_a_worker_refusal_passes_through_openai_shaped(fleet):
    async with fleet.post("/v1/embeddings", {"model": "all-minilm", "input": [""]}) as resp:
        assert resp.status == 400  # the worker's own 400 (an empty input), already OpenAI-shaped: kept as is
        error = (await resp.json())["error"]
    assert error["message"] == "invalid input" and error["type"] and resp.headers["X-Beacon-Worker"] == "gpu0"
    await good_request_succeeds(fleet)
