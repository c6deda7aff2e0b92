"""The simulated Ollama worker as an aiohttp app: routes, the failure-mode middleware, listings
(/, /api/version, /api/tags, /api/ps, /api/show), the /_sim control endpoints, the expiry reaper.

`build_sim_app(worker)` serves Ollama's API over a SimWorker; inference, model management and
/v1 live in their own modules. Serve it with handler_cancellation=True (the CLI does) so a client
that leaves stops its generation at once. Imports nothing from gateway/.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from local_workers.sim import embed, inference, manage, openai
from local_workers.sim.capabilities import capabilities, template
from local_workers.sim.engine import MODES, SimWorker
from local_workers.sim.models import parameter_count
from local_workers.sim.wire import (
    SIM_WORKER,
    SimError,
    details,
    entry,
    error,
    expires_iso,
    json_response,
    model_field,
    openai_error,
    read_json,
)

# Listings a worker still answers while its inference is failing (the "error" mode).
_ALWAYS_ANSWER = frozenset({"/", "/api/version", "/api/tags", "/api/ps", "/v1/models"})

__all__ = ["SIM_WORKER", "build_sim_app"]


def build_sim_app(worker: SimWorker) -> web.Application:
    app = web.Application(middlewares=[_modes], client_max_size=1 << 40)
    app[SIM_WORKER] = worker
    r = app.router
    r.add_get("/", _root)
    r.add_get("/api/version", _version)
    r.add_get("/api/tags", _tags)
    r.add_get("/api/ps", _ps)
    r.add_post("/api/show", _show)
    r.add_post("/api/generate", inference.generate)
    r.add_post("/api/chat", inference.chat)
    r.add_post("/api/embed", embed.embed)
    r.add_post("/api/embeddings", embed.embeddings)
    r.add_post("/api/pull", manage.pull)
    r.add_post("/api/push", manage.push)
    r.add_post("/api/create", manage.create)
    r.add_post("/api/copy", manage.copy)
    r.add_delete("/api/delete", manage.delete)
    r.add_route("HEAD", "/api/blobs/{digest}", manage.blob_head)
    r.add_post("/api/blobs/{digest}", manage.blob_post)
    openai.add_routes(r)
    r.add_post("/_sim/mode", _set_mode)
    r.add_get("/_sim/state", _state)
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application):
    """The keep-alive reaper runs for the app's lifetime; loads still running stop with it."""
    worker = app[SIM_WORKER]
    reaper = asyncio.create_task(worker.reap_forever())
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    await worker.close()


@web.middleware
async def _modes(request: web.Request, handler) -> web.StreamResponse:
    """Counts requests, applies "hang" and "error", and renders errors as Ollama or OpenAI would."""
    worker = request.app[SIM_WORKER]
    openai_shape = request.path.startswith("/v1/")
    if not request.path.startswith("/_sim/"):
        worker.stats.requests[request.path] += 1
        if "Authorization" in request.headers:
            worker.stats.authorization[request.headers["Authorization"]] += 1
        if not worker.unhung.is_set():
            await worker.unhung.wait()  # "hang": the connection is accepted and nothing is said
        missing = request.match_info.http_exception
        if missing is not None:  # Go's mux answers in plain text
            status = missing.status
            return web.Response(status=status, text="404 page not found" if status == 404 else "405 method not allowed")
        if worker.mode == "error" and request.path not in _ALWAYS_ANSWER:
            return (openai_error if openai_shape else error)(500, "simulated failure")
    try:
        return await handler(request)
    except SimError as exc:
        return (openai_error if openai_shape else error)(exc.status, exc.message)


async def _root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running")


async def _version(request: web.Request) -> web.Response:
    return json_response({"version": request.app[SIM_WORKER].version})


async def _tags(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    models = sorted(worker.disk.values(), key=lambda m: -worker.modified.get(m.name, 0.0))  # newest first
    return json_response({"models": [entry(worker, m) for m in models]})


async def _ps(request: web.Request) -> web.Response:
    """Resident (and loading) models, the one that stays longest first, as Ollama sorts them."""
    worker = request.app[SIM_WORKER]
    models = []
    for res in sorted(worker.loaded.values(), key=lambda r: -r.expires_at):
        item = entry(worker, res.model)
        del item["modified_at"]
        models.append(item | {"expires_at": expires_iso(res.expires_at), "size_vram": worker.reported_vram(res),
                              "context_length": res.runner.num_ctx})  # as loaded (Ollama: the runner's num_ctx)
    return json_response({"models": models})


async def _show(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    name = model_field(await read_json(request))
    if not name:
        raise SimError(400, "model is required")
    model = worker.find(name)
    if model is None:
        raise SimError(404, f"model '{name}' not found")
    arch = model.family if model.family in ("bert", "nomic-bert") else "llama"
    can = capabilities(model)
    heads = max(1, model.embedding_length // 64)
    info = {"general.architecture": arch, "general.basename": model.name.split(":")[0],
            "general.file_type": 15, "general.parameter_count": parameter_count(model.parameter_size, model.size_bytes),
            "general.quantization_version": 2, f"{arch}.block_count": 16,
            f"{arch}.context_length": model.context_length, f"{arch}.embedding_length": model.embedding_length,
            f"{arch}.attention.head_count": heads, f"{arch}.attention.head_count_kv": min(8, heads)}
    return json_response({
        "license": "", "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {model.name}\n",
        "parameters": "", "template": template(can), "details": details(model), "model_info": info,
        "capabilities": can,
        "modified_at": entry(worker, model)["modified_at"]})


async def _set_mode(request: web.Request) -> web.Response:
    data = await read_json(request)
    mode = data.get("mode")
    if mode not in MODES:
        raise SimError(400, f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    request.app[SIM_WORKER].set_mode(mode)
    return json_response({"mode": mode})


async def _state(request: web.Request) -> web.Response:
    """What tests and demos want to see at a glance; the same numbers as `worker.stats`."""
    worker = request.app[SIM_WORKER]
    stats = worker.stats
    resident = {name: {"active": r.active, "size_vram": r.size_vram, "loading": r.ready_at is None,
                       "draining": r.draining} for name, r in worker.loaded.items()}
    return json_response({
        "name": worker.name, "tier": worker.tier, "mode": worker.mode, "resident": resident,
        "loads": stats.loads, "unloads": stats.unloads, "evictions": stats.evictions,
        "requests": dict(stats.requests), "active": worker.active, "queued": worker.queued,
        "cancelled": stats.cancelled, "completed": stats.completed, "dropped": stats.dropped})
