"""Model management that fans out to many workers: pull, push, create, copy, delete.

Each operation has a target set (pull/create: every GPU worker unless the model's
`pull_to` says otherwise; copy/delete: the workers holding the model; push: one holder).
Progress streams are merged line by line with a `worker` field; success is reported only
when every target succeeded, otherwise an error names the workers that failed.
"""

from __future__ import annotations

from aiohttp import web

from gateway.context import GATEWAY, Gateway
from gateway.errors import BadRequest, ModelNotFound, NotFound, UpstreamFailed
from gateway.handlers.common import account, model_field, new_outcome, parse_object, read_body, resolve
from gateway.handlers.fanout import Result, run_progress, send_each
from gateway.state import Snapshot, WorkerView


def pull_targets(snap: Snapshot, model: str) -> list[WorkerView]:
    """Ollama workers only: llama.cpp and OpenAI-compatible servers have no model store to manage."""
    cfg = snap.config.model(model)
    wanted = set(cfg.pull_to) if cfg and cfg.pull_to else {"gpu"}
    return [w for w in _managed(snap) if w.tier in wanted or w.name in wanted]


def holders(snap: Snapshot, model: str) -> list[WorkerView]:
    return [w for w in _managed(snap) if w.has(model)]


def _managed(snap: Snapshot) -> list[WorkerView]:
    return [w for w in snap.workers.values() if w.config.kind == "ollama"]


async def _request(request: web.Request) -> tuple[Gateway, Snapshot, dict]:
    gw = request.app[GATEWAY]
    snap = gw.holder.current
    return gw, snap, parse_object(await read_body(request, snap.config.server.max_body_mib))


async def pull(request: web.Request) -> web.StreamResponse:
    gw, snap, data = await _request(request)
    model = resolve(snap, model_field(data))
    return await _progress(request, gw, "pull", model, pull_targets(snap, model), {**data, "model": model})


async def create(request: web.Request) -> web.StreamResponse:
    gw, snap, data = await _request(request)
    model = resolve(snap, model_field(data))
    return await _progress(request, gw, "create", model, pull_targets(snap, model), {**data, "model": model})


async def push(request: web.Request) -> web.StreamResponse:
    """Push from one worker that holds the model: the registry is shared, one copy is enough."""
    gw, snap, data = await _request(request)
    model = resolve(snap, model_field(data))
    ready = sorted(holders(snap, model), key=lambda w: (not w.up, w.tier != "gpu"))
    if not ready:
        raise ModelNotFound(model)
    return await _progress(request, gw, "push", model, ready[:1], {**data, "model": model})


async def _progress(request: web.Request, gw: Gateway, op: str, model: str, targets: list[WorkerView],
                    payload: dict) -> web.StreamResponse:
    if not targets:
        raise UpstreamFailed(f"no worker is a {op} target for {model!r} (check pull_to in the config)")
    outcome = new_outcome(request, op, model)
    try:
        return await run_progress(request, gw, f"/api/{op}", targets, payload, outcome)
    finally:
        account(gw.metrics, gw.holder.current, outcome)


async def copy(request: web.Request) -> web.Response:
    gw, snap, data = await _request(request)
    source = resolve(snap, model_field(data, "source"))
    destination = resolve(snap, model_field(data, "destination"))
    targets = holders(snap, source)
    if not targets:
        raise NotFound(f"model '{source}' not found")
    results = await send_each(gw, "POST", "/api/copy", targets, {"source": source, "destination": destination})
    return await _settle(gw, "copy", results, missing_ok=False)


async def delete(request: web.Request) -> web.Response:
    gw, snap, data = await _request(request)
    model = resolve(snap, model_field(data))
    targets = holders(snap, model)
    if not targets:
        raise NotFound(f"model '{model}' not found")
    results = await send_each(gw, "DELETE", "/api/delete", targets, {"model": model})
    return await _settle(gw, "delete", results, missing_ok=True)


async def _settle(gw: Gateway, op: str, results: list[Result], missing_ok: bool) -> web.Response:
    await gw.prober.refresh(r.worker for r in results)
    failed = [r for r in results if not (r.ok or (missing_ok and r.status == 404))]
    if failed:
        raise UpstreamFailed(f"{op} failed on {len(failed)} of {len(results)} workers: "
                             + "; ".join(f"{r.worker}: {r.detail}" for r in failed))
    return web.Response(status=200)


async def blob_head(request: web.Request) -> web.Response:
    """200 only when every worker has the blob, so a client uploads what any worker lacks."""
    gw = request.app[GATEWAY]
    digest = _digest(request)
    workers = [w for w in _managed(gw.holder.current) if w.up]
    results = await send_each(gw, "HEAD", f"/api/blobs/{digest}", workers, None)
    return web.Response(status=200 if all(r.ok for r in results) else 404)


async def blob_upload(request: web.Request) -> web.Response:
    from gateway.handlers.fanout import tee_upload  # large-body path, kept apart from the JSON fan-out

    gw = request.app[GATEWAY]
    digest = _digest(request)
    results = await tee_upload(gw, request, f"/api/blobs/{digest}", _managed(gw.holder.current))
    failed = [r for r in results if not r.ok]
    if any(r.status == 400 for r in failed):
        raise BadRequest(next(r.detail for r in failed if r.status == 400))
    if failed:
        raise UpstreamFailed("blob upload failed on " + "; ".join(f"{r.worker}: {r.detail}" for r in failed))
    return web.Response(status=201)


def _digest(request: web.Request) -> str:
    digest = request.match_info["digest"]
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise BadRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest

