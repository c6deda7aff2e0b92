"""Thin aiohttp handlers for Ollama's inference and listing endpoints (/api/*).

Inference (chat, generate, embed, embeddings, show) goes to one worker chosen by the
router and run by the proxy; listings (tags, ps, version) merge what the fleet says.
Model management that fans out to many workers lives in handlers/manage.py.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from backends.base import ResidentModel
from backends.ollama import timestamp
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
    """chat, generate, embed, embeddings and show: one worker answers, chosen by the router; an
    unload (keep_alive 0 and nothing to run) goes to every worker holding the model (handlers/unload.py,
    from handlers/inference.py once the operator's keep-alive rules have had their say)."""
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
    """What is loaded now, each model once (see _ps_entry). A healthy worker's picture is probed
    afresh when it is older than `[server] ps_fresh_s`, or when the gateway sent it a request since
    or has one in flight there (that may have loaded a model); but no worker is probed for ps more
    than once per ps_fresh_s. So a loop of calls cannot amplify onto the workers, and a call right after a
    generate waits a moment rather than answer what it knows is stale."""
    gw = request.app[GATEWAY]
    snap, now = gw.holder.current, gw.clock()
    fresh_s = snap.config.server.ps_fresh_s
    stale = [w.name for w in snap.up_workers()
             if w.probed_at is None or now - w.probed_at >= fresh_s or gw.inflight.active_models(w.name, w.probed_at)]
    if stale:
        await gw.prober.fresh(stale, fresh_s)
    return web.json_response({"models": _merge_ps(request, gw.holder.current)}, dumps=_dumps)


def _merge_ps(request: web.Request, snap: Snapshot) -> list[dict]:
    """Each loaded model once, as Ollama lists it, with `workers`: every healthy worker holding a
    copy. Longest remaining first, as Ollama orders its ps."""
    copies: dict[str, list[tuple[str, ResidentModel]]] = {}
    for worker in snap.up_workers():
        for name, resident in worker.resident.items():
            copies.setdefault(name, []).append((worker.name, resident))
    merged = [_ps_entry(name, copies[name]) for name in allowed_models(request, list(copies))]
    return sorted(merged, key=lambda m: _expiry(m.get("expires_at")), reverse=True)  # stable: ties keep order


def _ps_entry(name: str, copies: list[tuple[str, ResidentModel]]) -> dict:
    """One row for a model loaded on several workers. Its size, size_vram and context_length are one
    copy's, not a sum: a client reads them as the model's footprint and how much of it is on the GPU
    (`ollama ps` shows SIZE and PROCESSOR from them). The copy is the one that stays loaded longest,
    so expires_at is the latest: the model is loaded somewhere until then."""
    r = max((resident for _, resident in copies), key=lambda c: _expiry(c.expires_at))  # the first among equals
    return {"name": name, "model": name, "expires_at": r.expires_at, **r.raw,
            "size": r.size, "size_vram": r.size_vram, "context_length": r.context_length,
            "workers": [worker for worker, _ in copies]}


def _expiry(text: object) -> float:
    """expires_at as seconds, an unreadable or missing one before every other."""
    seconds = timestamp(text)
    return float("-inf") if seconds is None else seconds


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
