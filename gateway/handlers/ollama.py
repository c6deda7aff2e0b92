"""Thin aiohttp handlers for Ollama's inference and listing endpoints (/api/*).

Inference (chat, generate, embed, embeddings, show) goes to one worker chosen by the
router and run by the proxy; listings (tags, ps, version) merge what the fleet says.
Model management that fans out to many workers lives in handlers/manage.py.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.access import allowed_models
from gateway.context import GATEWAY
from gateway.errors import BadRequest, NoCapacity
from gateway.handlers.common import model_field
from gateway.handlers.inference import Read, serve
from gateway.state import Snapshot

RUNNING = "Ollama is running"
API_VERSION = "0.12.6"  # the Ollama API this gateway speaks, for fleets without Ollama workers


async def root(request: web.Request) -> web.Response:
    return web.Response(text=RUNNING)


async def infer(request: web.Request) -> web.StreamResponse:
    """chat, generate, embed, embeddings and show: one worker answers, chosen by the router."""
    endpoint = request.path.rsplit("/", 1)[-1]

    def read(data: dict, snap: Snapshot) -> Read:
        generates = endpoint in ("chat", "generate")
        return Read(endpoint, model_field(data), predict_of(data, snap) if generates else 0,
                    generates and data.get("stream", True) is not False)

    return await serve(request, endpoint, "ollama", read)


def predict_of(data: dict, snap: Snapshot) -> int:
    """The token budget of a chat or generate: `options.num_predict` when it sets a limit, else
    `default_num_predict`. As in Ollama, 0 and the negative values (-1 endless, -2 fill the
    context) set no limit, and a fractional number counts as its integer part; anything that is
    not a number is a 400 (Ollama's own words; Ollama answers that one with a 500)."""
    options = data.get("options")
    predict = options.get("num_predict") if isinstance(options, dict) else None
    if predict is None:
        return snap.config.routing.default_num_predict
    if isinstance(predict, bool) or not isinstance(predict, int | float):
        raise BadRequest('option "num_predict" must be of type integer')
    if predict < 1:
        return snap.config.routing.default_num_predict
    return int(min(predict, 2**31 - 1))


async def version(request: web.Request) -> web.Response:
    """The lowest version among healthy Ollama workers: what every request can count on. A fleet
    of only llama.cpp or OpenAI-compatible workers answers the Ollama API version the gateway speaks."""
    snap = request.app[GATEWAY].holder.current
    versions = [w.version for w in snap.up_workers() if w.version]
    if not versions and not snap.up_workers():
        raise NoCapacity("no worker is healthy", snap.config.server.retry_after_s)
    return web.json_response({"version": min(versions, key=_version_key) if versions else API_VERSION}, dumps=_dumps)


def _version_key(text: str) -> tuple:
    core = text.lstrip("v").split("-", 1)[0]
    return tuple(int(p) if p.isdigit() else 0 for p in core.split("."))


async def tags(request: web.Request) -> web.Response:
    """Every model a healthy worker holds, once, with the workers that hold it."""
    merged = request.app[GATEWAY].holder.current.derived("ollama.tags", _merge_tags)  # once per snapshot
    return web.json_response({"models": [merged[m] for m in allowed_models(request, list(merged))]}, dumps=_dumps)


def _merge_tags(snap: Snapshot) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for worker in snap.up_workers():
        for name, entry in worker.models.items():
            item = merged.setdefault(name, {**entry.raw, "workers": []})
            item["workers"].append(worker.name)
    return merged


async def ps(request: web.Request) -> web.Response:
    """What is loaded now. A healthy worker's picture is probed afresh when it is older than
    `[server] ps_fresh_s`, or when the gateway sent it a request since or has one in flight
    there (that may have loaded a model); but no worker is probed for ps more than once per
    ps_fresh_s. So a loop of calls cannot amplify onto the workers, and a call right after a
    generate waits a moment rather than answer what it knows is stale."""
    gw = request.app[GATEWAY]
    snap, now = gw.holder.current, gw.clock()
    fresh_s = snap.config.server.ps_fresh_s
    stale = [w.name for w in snap.up_workers()
             if w.probed_at is None or now - w.probed_at >= fresh_s or gw.inflight.active_models(w.name, w.probed_at)]
    if stale:
        await gw.prober.fresh(stale, fresh_s)
    models = []
    for worker in gw.holder.current.up_workers():
        for name in allowed_models(request, list(worker.resident)):
            r = worker.resident[name]
            models.append({"name": name, "model": name, "expires_at": r.expires_at, **r.raw,
                           "size": r.size, "size_vram": r.size_vram, "context_length": r.context_length,
                           "worker": worker.name})
    return web.json_response({"models": models}, dumps=_dumps)


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
