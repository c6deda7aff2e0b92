"""The simulated worker's OpenAI-compatible endpoints as Ollama serves them: /v1/chat/completions,
/v1/completions (SSE chunks ending `data: [DONE]`, usage on request), /v1/embeddings, /v1/models.

Same engine, words and pacing as the native API; only the wire shape differs. Errors are
rendered OpenAI-shaped by the app's middleware. No gateway imports.
"""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from aiohttp import web

from local_workers.sim.embed import embed_inputs
from local_workers.sim.engine import SimWorker
from local_workers.sim.inference import (
    MALFORMED,
    Answer,
    acquire,
    drop_connection,
    keep_alive_of,
    misbehaviour,
    refuse_unsupported,
    send_tokens,
)
from local_workers.sim.models import SimModel
from local_workers.sim.wire import SIM_WORKER, SimError, json_response, read_json

# Ollama's thinkFromReasoningEffort: OpenAI's efforts clamped to Ollama's think levels
_EFFORTS: dict[str, bool | str] = {"none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
                                   "max": "max", "xhigh": "max", "ultra": "max"}
_FAILURE = b'data: {"error":{"message":"simulated failure","type":"api_error","param":null,"code":null}}\n\n'


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/chat/completions", chat_completions)
    router.add_post("/v1/completions", completions)
    router.add_post("/v1/embeddings", embeddings)
    router.add_get("/v1/models", list_models)
    router.add_get("/v1/models/{model:.+}", one_model)


def _model_object(worker: SimWorker, model: SimModel) -> dict:
    namespace = model.name.split("/")[-2] if "/" in model.name else "library"
    return {"id": model.name, "object": "model", "created": int(worker.modified.get(model.name, 0)),
            "owned_by": namespace}


async def list_models(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    return json_response({"object": "list", "data": [_model_object(worker, m) for m in worker.disk.values()]})


async def one_model(request: web.Request) -> web.Response:
    worker, name = request.app[SIM_WORKER], request.match_info["model"]
    model = worker.find(name)
    if model is None:
        raise SimError(404, f"model '{name}' not found")
    return json_response(_model_object(worker, model))


async def _requested(request: web.Request) -> tuple[dict, str, SimModel]:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name = data.get("model")
    if not isinstance(name, str) or not name:
        raise SimError(400, "model is required")
    model = worker.find(name)
    if model is None:
        raise SimError(404, f'model "{name}" not found, try pulling it first')
    return data, name, model


def _native(data: dict, chat: bool) -> dict:
    """The OpenAI request as the native API would get it (Ollama translates the same way)."""
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    fmt = given if isinstance(given := data.get("response_format"), dict) else {}
    kind = fmt.get("type")
    schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    native: dict = {"options": {"num_predict": limit} if isinstance(limit, int) and limit > 0 else {},
                    "format": schema or ("json" if kind in ("json_object", "json_schema") else None)}
    if chat:
        return native | {"messages": data.get("messages"), "tools": data.get("tools"), "think": _think(data)}
    return native | {"prompt": data.get("prompt"), "suffix": data.get("suffix")}


def _think(data: dict) -> bool | str | None:
    """`reasoning.effort` (else `reasoning_effort`) as Ollama's think value; None when not asked."""
    reasoning = data.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else data.get("reasoning_effort")
    if effort in (None, ""):
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise SimError(400, f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", '
                            '"xhigh", "ultra", "max", or "none")')
    return _EFFORTS[effort]


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=True)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=False)


async def _complete(request: web.Request, chat: bool) -> web.StreamResponse:
    worker = request.app[SIM_WORKER]
    data, name, model = await _requested(request)
    if chat and not (isinstance(data.get("messages"), list) and data["messages"]):
        raise SimError(400, "[] is too short - 'messages'")
    keep_alive_s = keep_alive_of(worker, data)
    native = _native(data, chat)
    refuse_unsupported(model, name, native, chat)
    started = time.monotonic()
    try:
        res = await acquire(worker, model, keep_alive_s)
        try:
            answer = Answer(worker, res, name, native, chat, started)
            sse = Sse(request, answer, chat, data)
            return await (sse.stream() if data.get("stream") else sse.whole())
        finally:
            worker.release(res)
    except (asyncio.CancelledError, ConnectionResetError):
        if worker.mode != "drop":
            worker.stats.cancelled += 1
        raise asyncio.CancelledError() from None


class Sse:
    """One OpenAI-shaped answer over an Answer: chunks with `delta` (chat) or `text`, then usage."""

    def __init__(self, request: web.Request, answer: Answer, chat: bool, data: dict) -> None:
        self.request, self.answer, self.chat, self.worker = request, answer, chat, answer.worker
        self.include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        self.base = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{random.randrange(1000)}",
                     "object": "chat.completion.chunk" if chat else "text_completion", "created": int(time.time()),
                     "model": answer.name, "system_fingerprint": "fp_ollama"}

    def _usage(self) -> dict:
        a = self.answer
        return {"prompt_tokens": a.prompt_count, "completion_tokens": len(a.tokens),
                "total_tokens": a.prompt_count + len(a.tokens)}

    def _finish(self) -> str:
        return "tool_calls" if self.answer.tool_calls else self.answer.reason

    def _tool_calls(self) -> list[dict]:
        return [{"id": f"call_{random.getrandbits(40):010x}", "index": i, "type": "function",
                 "function": {"name": c["function"]["name"], "arguments": orjson.dumps(c["function"]["arguments"])
                              .decode()}} for i, c in enumerate(self.answer.tool_calls or [])]

    def _chunk(self, text: str, finish: str | None, tool_calls: list | None = None) -> bytes:
        if self.chat:
            delta = {"role": "assistant", "content": text} | ({"tool_calls": tool_calls} if tool_calls else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"text": text, "index": 0, "finish_reason": finish}
        return b"data: " + orjson.dumps(self.base | {"choices": [choice]}) + b"\n\n"

    def render(self, batch: list[str]) -> bytes:
        calls = self._tool_calls() if self.answer.tool_calls else None
        return b"".join(self._chunk(token, None, calls) for token in batch)

    async def whole(self) -> web.Response:
        parts: list[str] = []
        async for batch in self.answer.paced(self.request):
            parts += batch
            if self.worker.mode == "drop" and len(parts) >= 2:
                drop_connection(self.request, self.worker)
        if self.worker.mode == "error":
            raise SimError(500, "simulated failure")
        odd = misbehaviour(self.request, self.worker)
        if odd is not None:
            return odd
        self.worker.stats.completed += 1
        text = "".join(parts)
        if self.chat:
            message: dict[str, object] = {"role": "assistant", "content": text}
            message |= {"tool_calls": self._tool_calls()} if self.answer.tool_calls else {}
            choice = {"index": 0, "message": message, "finish_reason": self._finish()}
        else:
            choice = {"text": text, "index": 0, "finish_reason": self._finish()}
        kind = "chat.completion" if self.chat else "text_completion"
        return json_response(self.base | {"object": kind, "choices": [choice], "usage": self._usage()})

    async def stream(self) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        if not await send_tokens(self.request, self.worker, resp, self.answer.paced(self.request), self.render,
                                 _FAILURE, b"data: " + MALFORMED + b"\n\n"):
            return resp
        await resp.write(self._chunk("", self._finish()))
        if self.include_usage:
            await resp.write(b"data: " + orjson.dumps(self.base | {"choices": [], "usage": self._usage()}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        self.worker.stats.completed += 1
        return resp


async def embeddings(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    data, name, model = await _requested(request)
    inputs = data.get("input")
    inputs = [inputs] if isinstance(inputs, str) and inputs else inputs
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise SimError(400, "invalid input")
    dims = data.get("dimensions")
    dims = dims if isinstance(dims, int) and 0 < dims < model.embedding_length else model.embedding_length
    vectors, count, _ = await embed_inputs(request, worker, model, keep_alive_of(worker, data), inputs, dims)
    return misbehaviour(request, worker) or json_response({
        "object": "list", "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
        "model": name, "usage": {"prompt_tokens": count, "total_tokens": count}})
