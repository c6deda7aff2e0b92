"""The simulated worker's inference endpoints: /api/generate, /api/chat, /api/embed,
/api/embeddings, as Ollama answers them (NDJSON streams, final fields in ns, load/unload).

Token text is deterministic (a hash of the prompt picks words), paced at the worker's
rate. Headers go out only with the first token, as Ollama does. No VRAM logic here.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from aiohttp import web

from backends.sim.catalog import SimModel, parse_keep_alive
from backends.sim.engine import Busy, Loaded, SimWorker

WORDS = ("the", "sky", "is", "blue", "because", "light", "scatters", "in", "air", "and", "short", "waves",
         "bend", "more", "than", "long", "ones", "so", "we", "see", "it", "every", "day", "here")
DEFAULT_TOKENS = 24
NO_PACING = 100_000.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def tokens_for(text: str, n: int, fmt: object) -> list[str]:
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).digest(), "big")
    words = [" " + WORDS[(seed + i * 7) % len(WORDS)] for i in range(n)]
    if fmt and n >= 2:  # a JSON answer, still n tokens
        words = ['{"answer": "'] + [w.strip() + " " for w in words[1:-1]] + ['"}']
    return words


def prompt_text(data: dict, chat: bool) -> str:
    if not chat:
        return str(data.get("system") or "") + str(data.get("prompt") or "")
    messages = data.get("messages") or []
    return "\n".join(str(m.get("content") or "") for m in messages if isinstance(m, dict))


def num_predict(data: dict) -> tuple[int, str]:
    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    n = options.get("num_predict")
    if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
        return n, "length"
    return DEFAULT_TOKENS, "stop"


def final_fields(worker: SimWorker, lm: Loaded, prompt_count: int, n: int, load_s: float, started: float) -> dict:
    rate = worker.rate(lm)
    return {"total_duration": int((time.monotonic() - started) * 1e9), "load_duration": int(load_s * 1e9),
            "prompt_eval_count": prompt_count, "prompt_eval_duration": int(prompt_count / (rate * 10) * 1e9),
            "eval_count": n, "eval_duration": int(n / rate * 1e9)}


async def generate(request: web.Request, worker: SimWorker, data: dict, model: SimModel,
                   chat: bool) -> web.StreamResponse:
    try:
        keep_alive_s = parse_keep_alive(data.get("keep_alive"), worker.default_keep_alive_s)
    except ValueError as exc:
        return error(400, str(exc))
    empty = not data.get("messages") if chat else not data.get("prompt")
    if empty:
        return await _load_only(worker, model, keep_alive_s, chat)
    try:
        lm, load_s = await worker.acquire(model)
    except Busy:
        return error(503, "server busy, please try again.  maximum pending requests exceeded")
    try:
        return await _answer(request, worker, data, lm, load_s, chat)
    except (asyncio.CancelledError, ConnectionResetError):
        worker.stats.cancelled += 1
        raise
    finally:
        await worker.release(lm, keep_alive_s)


async def _load_only(worker: SimWorker, model: SimModel, keep_alive_s: float, chat: bool) -> web.Response:
    reason = "unload" if keep_alive_s == 0 else "load"
    if reason == "unload":
        worker.unload_now(model.name)
    else:
        lm, _ = await worker.acquire(model)
        await worker.release(lm, keep_alive_s)
    body = {"model": model.name, "created_at": now_iso(), "done": True, "done_reason": reason}
    body.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    return web.json_response(body)


async def _answer(request: web.Request, worker: SimWorker, data: dict, lm: Loaded, load_s: float,
                  chat: bool) -> web.StreamResponse:
    started = time.monotonic() - load_s
    text = prompt_text(data, chat)
    n, reason = num_predict(data)
    calls = _tool_calls(data) if chat and _wants_tool(data) else None
    tokens = [] if calls else tokens_for(text, n, data.get("format"))
    fields = {"done": True, "done_reason": "stop" if calls else reason}
    if not chat:
        fields["context"] = list(range(len(text.split()) + len(tokens)))
    timing = (len(text.split()), load_s, started)
    if data.get("stream", True) is not False:
        return await _stream(request, worker, lm, tokens, chat, calls, fields, timing)
    parts = [t async for t in _paced(worker, lm, tokens)]
    if worker.mode == "drop":
        request.transport.close()
        return web.Response()
    body = _piece(lm.model.name, "".join(parts), chat, calls)
    body.update(fields, **final_fields(worker, lm, timing[0], len(tokens), load_s, started))
    worker.stats.completed += 1
    return _malformed() if worker.mode == "malformed" else web.json_response(body)


async def _stream(request, worker, lm, tokens, chat, calls, fields, timing) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    sent = 0
    async for token in _paced(worker, lm, tokens):
        if not resp.prepared:
            await resp.prepare(request)
        if worker.mode == "drop" and sent == 2:
            request.transport.close()  # the process died mid-answer: the chunked body just stops
            return resp
        if worker.mode == "malformed":
            await resp.write(b'{"model": oops\n')
        else:
            await resp.write(orjson.dumps(_piece(lm.model.name, token, chat, None) | {"done": False}) + b"\n")
        sent += 1
    if not resp.prepared:
        await resp.prepare(request)
    final = _piece(lm.model.name, "", chat, calls)
    final.update(fields, **final_fields(worker, lm, timing[0], len(tokens), timing[1], timing[2]))
    await resp.write(orjson.dumps(final) + b"\n")
    await resp.write_eof()
    worker.stats.completed += 1
    return resp


async def _paced(worker: SimWorker, lm: Loaded, tokens: list[str]) -> AsyncIterator[str]:
    for token in tokens:
        rate = worker.rate(lm)
        await asyncio.sleep(0 if rate >= NO_PACING else 1.0 / rate)
        yield token
    if not tokens:
        await asyncio.sleep(0)


def _piece(model: str, content: str, chat: bool, tool_calls) -> dict:
    out = {"model": model, "created_at": now_iso()}
    if chat:
        message = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        out["message"] = message
    else:
        out["response"] = content
    return out


def _wants_tool(data: dict) -> bool:
    tools, messages = data.get("tools"), data.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    return bool(tools) and isinstance(tools, list) and last.get("role") == "user"


def _tool_calls(data: dict) -> list[dict]:
    tool = data["tools"][0] if isinstance(data["tools"][0], dict) else {}
    name = (tool.get("function") or {}).get("name", "tool")
    return [{"function": {"name": name, "arguments": {}}}]


def _malformed() -> web.Response:
    return web.Response(body=b'{"model": oops', content_type="application/json")


def vector(text: str, dims: int) -> list[float]:
    raw = hashlib.shake_256(text.encode("utf-8", "replace")).digest(dims * 4)
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dims}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def embed(request: web.Request, worker: SimWorker, data: dict, model: SimModel, legacy: bool) -> web.Response:
    try:
        keep_alive_s = parse_keep_alive(data.get("keep_alive"), worker.default_keep_alive_s)
    except ValueError as exc:
        return error(400, str(exc))
    inputs = data.get("prompt", "") if legacy else data.get("input", [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        return error(400, "invalid input type")
    dims = data.get("dimensions") if isinstance(data.get("dimensions"), int) else model.embedding_length
    started = time.monotonic()
    try:
        lm, load_s = await worker.acquire(model)
    except Busy:
        return error(503, "server busy, please try again.  maximum pending requests exceeded")
    await worker.release(lm, keep_alive_s)
    worker.stats.completed += 1
    vectors = [vector(text, dims) for text in inputs]
    if legacy:
        return web.json_response({"embedding": vectors[0] if vectors else []})
    return web.json_response({"model": model.name, "embeddings": vectors,
                              "total_duration": int((time.monotonic() - started) * 1e9),
                              "load_duration": int(load_s * 1e9),
                              "prompt_eval_count": sum(len(t.split()) for t in inputs)})
