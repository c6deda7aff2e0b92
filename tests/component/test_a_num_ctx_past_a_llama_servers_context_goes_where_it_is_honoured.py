"""A llama.cpp server's context is a start flag (-c, /props n_ctx): a request whose num_ctx is larger
is not honoured there and reloads nothing. It goes to a worker that can honour it (an Ollama worker,
loading the model if it must); when none can, it is served there, within that context, and its
request.done line says so (reason short-context)."""

import orjson
from aiohttp import web
from structlog.testing import capture_logs

from tests.component.fake_workers import MODEL, FakeWorker
from tests.conftest import WorkerSpec

ANSWER = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def llama_server(n_ctx: int) -> FakeWorker:
    worker = FakeWorker("llamacpp")

    async def props(request: web.Request) -> web.Response:
        return web.json_response({"total_slots": 1, "default_generation_settings": {"n_ctx": n_ctx}})

    async def chat(request: web.Request) -> web.Response:
        orjson.loads(await request.read())
        return web.json_response(ANSWER)

    worker.routes.update({"/props": props, "/v1/chat/completions": chat})
    return worker


async def chat(fleet, num_ctx: int) -> tuple[int, str]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_ctx": num_ctx, "num_predict": 2}}
    async with fleet.post("/api/chat", body) as resp:
        await resp.read()
        return resp.status, resp.headers.get("X-Beacon-Worker", "")


async def test_a_larger_num_ctx_goes_to_an_ollama_worker_and_else_is_served_within_the_servers_context(
        start_fleet, aiohttp_server):
    server = await aiohttp_server(llama_server(2048).app())
    fleet = await start_fleet(WorkerSpec("llama0", kind="llamacpp", url=str(server.make_url("")).rstrip("/")),
                              WorkerSpec("gpu0"))  # the simulator's model is trained for 4096 tokens
    assert await chat(fleet, 2048) == (200, "llama0"), "it fits in the server's context: its loaded copy serves"
    assert await chat(fleet, 4096) == (200, "gpu0"), "honoured where the model can load with that context"
    assert fleet.workers["gpu0"].loaded[MODEL].runner.num_ctx == 4096
    await fleet.stop_worker("gpu0")
    await fleet.probe()
    with capture_logs() as logs:
        assert await chat(fleet, 4096) == (200, "llama0")
    done = [e for e in logs if e["event"] == "request.done"]
    assert [(e["worker"], e["reason"], e["outcome"]) for e in done] == [("llama0", "short-context", "ok")]
