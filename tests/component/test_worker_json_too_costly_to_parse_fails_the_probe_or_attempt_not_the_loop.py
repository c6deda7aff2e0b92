"""A worker's JSON is parsed on the event loop every client shares: an answer made of hundreds of
thousands of empty arrays (cheap to send, a second and a GiB to parse) fails the probe or the
attempt before orjson sees it, and the gateway goes on serving from the other workers."""

from __future__ import annotations

import pytest
from aiohttp import web

from backends.upstream import AnswerTooCostly, worker_json
from tests.component.fake_workers import MODEL, FakeWorker
from tests.conftest import WorkerSpec

COSTLY = b'{"models":[' + b"[]," * 400_000 + b'[]]}'


def test_worker_json_refuses_more_containers_than_any_real_answer_and_parses_the_rest():
    with pytest.raises(AnswerTooCostly):
        worker_json(COSTLY)
    assert worker_json(b'{"models":' + b'[{"name":"a"}]' + b"}") == {"models": [{"name": "a"}]}
    big_text = b'{"response":"' + b"x" * 1_000_000 + b'"}'  # large but flat: parsed
    assert len(worker_json(big_text)["response"]) == 1_000_000


async def test_a_probe_answer_too_costly_to_parse_fails_that_probe(start_fleet, aiohttp_server):
    fake = FakeWorker("ollama")

    async def tags(request: web.Request) -> web.Response:
        return web.Response(body=COSTLY, content_type="application/json")

    fake.routes["/api/tags"] = tags
    server = await aiohttp_server(fake.app())
    fleet = await start_fleet(WorkerSpec("hostile", url=str(server.make_url("")).rstrip("/")),
                              WorkerSpec("gpu0", models=f"{MODEL}=1.3GiB"))
    snap = fleet.gateway.holder.current
    assert not snap.worker("hostile").up and "JSON arrays and objects" in snap.worker("hostile").last_error
    async with fleet.post("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}) as resp:
        assert resp.status == 200 and resp.headers["X-Beacon-Worker"] == "gpu0"


async def test_a_translated_answer_too_costly_to_parse_fails_over(start_fleet, aiohttp_server):
    fake = FakeWorker("openai")

    async def chat(request: web.Request) -> web.Response:
        return web.Response(body=b'{"choices":[' + b"[]," * 400_000 + b"[]]}", content_type="application/json")

    fake.routes["/v1/chat/completions"] = chat
    server = await aiohttp_server(fake.app())
    fleet = await start_fleet(WorkerSpec("hostile", kind="openai", url=str(server.make_url("")).rstrip("/")))
    async with fleet.post("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                                        "stream": False}) as resp:
        body = await resp.json()
    assert resp.status == 502 and "hostile" in body["error"] and fake.hits["/v1/chat/completions"] == 1
    async with fleet.get("/health/live") as live:
        assert live.status == 200
