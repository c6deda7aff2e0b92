"""The simulated worker's OpenAI-compatible endpoints (/v1/*), as Ollama serves them.

Shares the engine and token generator with the native API; only the wire shape differs:
SSE chunks ending with `data: [DONE]`, usage objects, OpenAI-shaped errors.
"""

from __future__ import annotations

import time
from functools import partial

import orjson
from aiohttp import web

from backends.sim import inference
from backends.sim.engine import Busy, SimWorker


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                        "code": None}}, status=status)


def add_routes(app: web.Application, worker: SimWorker) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", partial(_complete, worker=worker, chat=True))
    r.add_post("/v1/completions", partial(_complete, worker=worker, chat=False))
    r.add_post("/v1/embeddings", partial(_embeddings, worker=worker))
    r.add_get("/v1/models", partial(_models, worker=worker))
    r.add_get("/v1/models/{model:.+}", partial(_one_model, worker=worker))


async def _models(request: web.Request, worker: SimWorker) -> web.Response:
    return web.json_response({"object": "list", "data": [_model(m.name) for m in worker.disk.values()]})


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1761998400, "owned_by": "library"}


async def _one_model(request: web.Request, worker: SimWorker) -> web.Response:
    model = worker.find(request.match_info["model"])
    if model is None:
        return _error(404, f"model '{request.match_info['model']}' not found")
    return web.json_response(_model(model.name))


async def _request(request: web.Request, worker: SimWorker):
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None, None, _error(400, "invalid JSON body")
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        return None, None, _error(400, "model is required")
    model = worker.find(data["model"])
    if model is None:
        return None, None, _error(404, f"model \"{data['model']}\" not found, try pulling it first")
    return data, model, None


async def _complete(request: web.Request, worker: SimWorker, chat: bool) -> web.StreamResponse:
    data, model, failure = await _request(request, worker)
    if failure:
        return failure
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    n = limit if isinstance(limit, int) and limit > 0 else inference.DEFAULT_TOKENS
    text = "\n".join(str(m.get("content")) for m in data.get("messages") or [] if isinstance(m, dict)) if chat \
        else str(data.get("prompt", ""))
    try:
        lm, _ = await worker.acquire(model)
    except Busy:
        return _error(503, "server busy, please try again.  maximum pending requests exceeded")
    try:
        tokens = inference.tokens_for(text, n, data.get("response_format"))
        reason = "length" if limit else "stop"
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": n, "total_tokens": len(text.split()) + n}
        if data.get("stream"):
            return await _sse(request, worker, lm, tokens, chat, model.name, reason, usage, data)
        parts = [t async for t in inference._paced(worker, lm, tokens)]  # noqa: SLF001 - same pacing as /api
        worker.stats.completed += 1
        choice = {"index": 0, "finish_reason": reason}
        choice |= {"message": {"role": "assistant", "content": "".join(parts)}} if chat else {"text": "".join(parts)}
        return web.json_response({"id": "chatcmpl-sim", "object": "chat.completion" if chat else "text_completion",
                                  "created": int(time.time()), "model": model.name, "choices": [choice],
                                  "usage": usage})
    finally:
        await worker.release(lm, worker.default_keep_alive_s)


async def _sse(request, worker, lm, tokens, chat, name, reason, usage, data) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    kind = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": "chatcmpl-sim", "object": kind, "created": int(time.time()), "model": name}

    def chunk(content: str | None, finish: str | None) -> bytes:
        choice = {"index": 0, "finish_reason": finish}
        choice |= {"delta": {"role": "assistant", "content": content or ""}} if chat else {"text": content or ""}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    sent = 0
    async for token in inference._paced(worker, lm, tokens):  # noqa: SLF001
        if not resp.prepared:
            await resp.prepare(request)
        if worker.mode == "drop" and sent == 2:
            request.transport.close()
            return resp
        await resp.write(chunk(token, None))
        sent += 1
    if not resp.prepared:
        await resp.prepare(request)
    await resp.write(chunk(None, reason))
    if (data.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    worker.stats.completed += 1
    return resp


async def _embeddings(request: web.Request, worker: SimWorker) -> web.Response:
    data, model, failure = await _request(request, worker)
    if failure:
        return failure
    inputs = data.get("input")
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        return _error(400, "invalid input type")
    lm, _ = await worker.acquire(model)
    await worker.release(lm, worker.default_keep_alive_s)
    return web.json_response({"object": "list", "model": model.name, "data": [
        {"object": "embedding", "index": i, "embedding": inference.vector(t, model.embedding_length)}
        for i, t in enumerate(inputs)], "usage": {"prompt_tokens": 0, "total_tokens": 0}})
