"""The simulated Ollama worker as an aiohttp app: routes, failure modes, listings, models.

`build_sim_app(worker)` serves Ollama's API over the SimWorker state machine. Failure modes
switch while it runs (`POST /_sim/mode`). Inference lives in inference.py, the OpenAI
compatibility in openai.py; this module holds the rest and the mode middleware.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from datetime import UTC, datetime
from functools import partial

import orjson
from aiohttp import web

from backends.sim import inference, openai
from backends.sim.catalog import GIB, SimModel, normalise
from backends.sim.engine import MODES, SimWorker

SIM_WORKER = web.AppKey("sim_worker", SimWorker)
_ALWAYS_ANSWER = ("/", "/api/version", "/api/tags", "/api/ps")
_FOREVER = "2318-11-23T00:00:00Z"


def build_sim_app(worker: SimWorker) -> web.Application:
    app = web.Application(middlewares=[_modes], client_max_size=1024**3)
    app[SIM_WORKER] = worker
    r = app.router
    r.add_get("/", _root)
    r.add_get("/api/version", _version)
    r.add_get("/api/tags", _tags)
    r.add_get("/api/ps", _ps)
    r.add_post("/api/show", _show)
    r.add_post("/api/generate", _with_model(partial(inference.generate, chat=False)))
    r.add_post("/api/chat", _with_model(partial(inference.generate, chat=True)))
    r.add_post("/api/embed", _with_model(partial(inference.embed, legacy=False)))
    r.add_post("/api/embeddings", _with_model(partial(inference.embed, legacy=True)))
    r.add_post("/api/pull", _pull)
    r.add_post("/api/push", _push)
    r.add_post("/api/create", _create)
    r.add_post("/api/copy", _copy)
    r.add_delete("/api/delete", _delete)
    r.add_route("HEAD", "/api/blobs/{digest}", _blob_head)
    r.add_post("/api/blobs/{digest}", _blob_post)
    r.add_post("/_sim/mode", _set_mode)
    r.add_get("/_sim/state", _state)
    openai.add_routes(app, worker)
    app.cleanup_ctx.append(_reaper)
    return app


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _version(request: web.Request) -> web.Response:
    return web.json_response({"version": request.app[SIM_WORKER].version})


async def _state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_WORKER].state())


@web.middleware
async def _modes(request: web.Request, handler) -> web.StreamResponse:
    worker = request.app[SIM_WORKER]
    if not request.path.startswith("/_sim/"):
        worker.stats.requests[request.path] += 1
        await worker.unhung.wait()  # "hang": accept, then say nothing until the mode changes
        if worker.mode == "error" and request.path not in _ALWAYS_ANSWER:
            return inference.error(500, "simulated failure")
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed")


async def _reaper(app: web.Application):
    async def loop() -> None:
        while True:
            await asyncio.sleep(0.05)
            app[SIM_WORKER].expire()

    task = asyncio.create_task(loop())
    yield
    task.cancel()


async def _json(request: web.Request) -> dict | web.Response:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return inference.error(400, f"invalid character in request body: {exc}")
    return data if isinstance(data, dict) else inference.error(400, "json: cannot unmarshal into request object")


def _with_model(answer):
    async def handler(request: web.Request) -> web.StreamResponse:
        worker, data = request.app[SIM_WORKER], await _json(request)
        if isinstance(data, web.Response):
            return data
        name = data.get("model") or data.get("name")
        if not isinstance(name, str) or not name:
            return inference.error(400, "model is required")
        model = worker.find(name)
        if model is None:
            return inference.error(404, f'model "{name}" not found, try pulling it first')
        return await answer(request, worker, data, model)

    return handler


def _entry(m: SimModel) -> dict:
    return {"name": m.name, "model": m.name, "modified_at": "2026-11-01T12:00:00Z", "size": m.size_bytes,
            "digest": m.digest[7:], "details": {"parent_model": "", "format": "gguf", "family": m.family,
                                                 "families": [m.family], "parameter_size": m.params,
                                                 "quantization_level": m.quantization_level}}


async def _tags(request: web.Request) -> web.Response:
    return web.json_response({"models": [_entry(m) for m in request.app[SIM_WORKER].disk.values()]})


async def _ps(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    models = []
    for lm in worker.loaded.values():
        expires = _FOREVER if lm.expires_at == float("inf") else _iso_in(lm.expires_at)
        models.append({**_entry(lm.model), "expires_at": expires, "size_vram": worker.reported_vram(lm),
                       "context_length": lm.model.context_length})
    return web.json_response({"models": models})


def _iso_in(deadline: float) -> str:
    wall = time.time() + max(0.0, deadline - time.monotonic())
    return datetime.fromtimestamp(wall, UTC).isoformat()


async def _show(request: web.Request) -> web.Response:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    name = str(data.get("model") or data.get("name") or "")
    model = worker.find(name) if name else None
    if model is None:
        return inference.error(404, f"model '{name}' not found")
    width = model.embedding_length if model.is_embedding else 2048
    info = {"general.architecture": "llama", "general.parameter_count": int(model.size_bytes / 0.6),
            "llama.context_length": model.context_length, "llama.embedding_length": width,
            "llama.block_count": 16, "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8}
    entry = _entry(model)
    return web.json_response({"license": "", "modelfile": f"FROM {model.name}\n", "parameters": "",
                              "template": "{{ .Prompt }}", "details": entry["details"], "model_info": info,
                              "capabilities": ["embedding"] if model.is_embedding else ["completion"],
                              "modified_at": entry["modified_at"]})


async def _progress(request: web.Request, stream: bool, steps: list[dict], seconds: float,
                    done=lambda: None) -> web.StreamResponse:
    """Ollama's progress: NDJSON status lines ending in success, or one object when not streaming.
    `done` runs before success is said, so a client that hears success sees the result."""
    if not stream:
        await asyncio.sleep(seconds)
        done()
        return web.json_response({"status": "success"})
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    for step in steps:
        await resp.write(orjson.dumps(step) + b"\n")
        await asyncio.sleep(seconds / len(steps))
    done()
    await resp.write(b'{"status":"success"}\n')
    return resp


def _layer_steps(verb: str, m: SimModel) -> list[dict]:
    digest = m.digest
    return [{"status": f"{verb} {digest[7:19]}", "digest": digest, "total": m.size_bytes,
             "completed": m.size_bytes * k // 4} for k in range(1, 5)]


async def _failed(request: web.Request, stream: bool, message: str, status: int = 500) -> web.StreamResponse:
    if not stream:
        return inference.error(status, message)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    await resp.write(orjson.dumps({"error": message}) + b"\n")
    return resp


async def _pull(request: web.Request) -> web.StreamResponse:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    stream = data.get("stream", True) is not False
    model = worker.registry.get(normalise(str(data.get("model") or data.get("name") or "")))
    if model is None:
        return await _failed(request, stream, "pull model manifest: file does not exist")
    steps = [{"status": "pulling manifest"}, *_layer_steps("pulling", model),
             {"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
    return await _progress(request, stream, steps, model.size_bytes / GIB * worker.pull_s_per_gib,
                           lambda: worker.disk.__setitem__(model.name, model))


async def _push(request: web.Request) -> web.StreamResponse:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    stream = data.get("stream", True) is not False
    model = worker.find(str(data.get("model") or data.get("name") or ""))
    if model is None:
        return await _failed(request, stream, "file does not exist", 404)
    steps = [{"status": "retrieving manifest"}, *_layer_steps("pushing", model), {"status": "pushing manifest"}]
    return await _progress(request, stream, steps, model.size_bytes / GIB * worker.pull_s_per_gib)


async def _create(request: web.Request) -> web.StreamResponse:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    stream, name = data.get("stream", True) is not False, str(data.get("model") or data.get("name") or "")
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    source = worker.find(str(data["from"])) if data.get("from") else None
    if not name or (data.get("from") and source is None):
        return await _failed(request, stream, "neither 'from' nor 'files' was specified" if not name else
                             f"model '{data.get('from')}' not found", 400 if not name else 404)
    missing = [d for d in files.values() if d not in worker.blobs]
    if missing or (source is None and not files):
        return await _failed(request, stream, f"blob {missing[0]} not found" if missing else
                             "neither 'from' nor 'files' was specified", 400)
    size = source.size_bytes if source else sum(worker.blobs[d] for d in files.values())
    steps = [{"status": f"using existing layer {d}"} for d in files.values()] + [{"status": "writing manifest"}]
    made = SimModel(normalise(name), size, family=source.family if source else "llama")
    return await _progress(request, stream, steps, 0.01, lambda: worker.disk.__setitem__(made.name, made))


async def _copy(request: web.Request) -> web.Response:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    source = worker.find(str(data.get("source") or ""))
    if source is None or not data.get("destination"):
        return inference.error(404 if source is None else 400, f"model '{data.get('source')}' not found"
                               if source is None else "destination is required")
    dest = normalise(str(data["destination"]))
    worker.disk[dest] = SimModel(dest, source.size_bytes, source.family, source.parameter_size)
    return web.Response(status=200)


async def _delete(request: web.Request) -> web.Response:
    worker, data = request.app[SIM_WORKER], await _json(request)
    if isinstance(data, web.Response):
        return data
    name = str(data.get("model") or data.get("name") or "")
    model = worker.find(name) if name else None
    if model is None:
        return inference.error(404, f"model '{name}' not found")
    worker.unload_now(model.name)
    del worker.disk[model.name]
    return web.Response(status=200)


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


async def _blob_head(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    return web.Response(status=200 if digest in request.app[SIM_WORKER].blobs else 404)


async def _blob_post(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    if not _DIGEST.fullmatch(digest):
        return inference.error(400, "invalid digest format")
    hasher, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(1 << 20):
        hasher.update(chunk)
        size += len(chunk)
    if "sha256:" + hasher.hexdigest() != digest:
        return inference.error(400, "digest mismatch")
    request.app[SIM_WORKER].blobs[digest] = size
    return web.Response(status=201)


async def _set_mode(request: web.Request) -> web.Response:
    data = await _json(request)
    if isinstance(data, web.Response):
        return data
    try:
        request.app[SIM_WORKER].set_mode(str(data.get("mode")))
    except ValueError:
        return inference.error(400, f"unknown mode {data.get('mode')!r}; modes: {', '.join(MODES)}")
    return web.json_response({"mode": data["mode"]})
