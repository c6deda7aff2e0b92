"""Model management that fans out to many workers: pull, push, create, copy, delete.

Each operation has a target set (pull/create: every GPU worker unless the model's
`pull_to` says otherwise; copy/delete: the workers holding the model; push: one holder).
Progress streams are merged line by line with a `worker` field; success is reported only
when every target succeeded, otherwise an error names the workers that failed: with Ollama's
status for a failed pull when every target failed (500, or the 4xx they all answered), 502 when
only some did, and as the last line of a stream that had begun (handlers/fanout.py).
A key's `models` list holds here too: every model name an operation reads or writes is judged,
and a key Ollama's Go decoder would read in place of a judged one (`Model`, `FROM`) is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.access import CLIENT, allow_model
from gateway.context import GATEWAY, Gateway
from gateway.errors import (
    UNREADABLE_BODY,
    BadRequest,
    GatewayError,
    ModelNotFound,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    UpstreamFailed,
)
from gateway.handlers.common import REQUEST_ID, account, model_field, read_object, resolve
from gateway.handlers.fanout import Result, run_progress, send_each, tee_upload
from gateway.outcome import Asked, Trail, outcome_of, timer
from gateway.state import Snapshot, WorkerView

_MIB = 1024 * 1024


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
    _, data = await read_object(request, snap.config.server.max_body_mib)  # configured limits + check_keys:
    return gw, snap, data  # the worker reads exactly the names judged here


def _allowed(request: web.Request, snap: Snapshot, name: str) -> str:
    """The canonical name, once the request's key may use it (403 before anything is looked up,
    so a key learns nothing of models outside its list, not even whether they exist)."""
    model = resolve(snap, name)
    allow_model(request, model)
    return model


def _named(data: dict[str, Any], **judged: str) -> dict[str, Any]:
    """The body a worker gets: the judged (canonical) names in place of the client's spelling, and
    no deprecated `name` beside `model` for a worker to read instead."""
    return {**{k: v for k, v in data.items() if k != "name"}, **judged}


async def pull(request: web.Request) -> web.StreamResponse:
    gw, snap, data = await _request(request)
    model = _allowed(request, snap, model_field(data))
    return await _progress(request, gw, "pull", model, pull_targets(snap, model), _named(data, model=model))


async def create(request: web.Request) -> web.StreamResponse:
    gw, snap, data = await _request(request)
    model = _allowed(request, snap, model_field(data))
    fields = {"model": model}
    source = data.get("from")
    if source not in (None, ""):  # Ollama treats an empty `from` as none
        if not isinstance(source, str):
            raise BadRequest(f"from must be a string, got {type(source).__name__}")
        fields["from"] = _allowed(request, snap, source)
    client = request.get(CLIENT)
    if client is not None and client.models and ("modelfile" in data or "path" in data):
        # Older Ollama reads its source from a Modelfile text or a server path: names no one judged.
        raise BadRequest("create with modelfile or path is refused for a key limited to some models; "
                         "name the source model in from, or upload files as blobs")
    return await _progress(request, gw, "create", model, pull_targets(snap, model), _named(data, **fields))


async def push(request: web.Request) -> web.StreamResponse:
    """Push from one worker that holds the model: the registry is shared, one copy is enough."""
    gw, snap, data = await _request(request)
    model = _allowed(request, snap, model_field(data))
    ready = sorted(holders(snap, model), key=lambda w: (not w.up, w.tier != "gpu"))
    if not ready:
        raise ModelNotFound(model)
    return await _progress(request, gw, "push", model, ready[:1], _named(data, model=model))


async def _progress(request: web.Request, gw: Gateway, op: str, model: str, targets: list[WorkerView],
                    payload: dict) -> web.StreamResponse:
    if not targets:
        raise UpstreamFailed(f"no worker is a {op} target for {model!r} (check pull_to in the config)")
    asked, trail = Asked(request[REQUEST_ID], op, op, model, timer()), Trail(",".join(w.name for w in targets))
    relayed, error = None, None
    try:
        relayed = await run_progress(request, gw, f"/api/{op}", targets, payload)
        return relayed.response
    except BaseException as exc:
        error = exc
        raise
    finally:
        account(gw.metrics, gw.holder.current, outcome_of(asked, trail, relayed, error))


async def copy(request: web.Request) -> web.Response:
    gw, snap, data = await _request(request)
    source = _allowed(request, snap, model_field(data, "source"))  # reading a model is using it
    destination = _allowed(request, snap, model_field(data, "destination"))  # else: a forbidden model renamed
    targets = holders(snap, source)
    if not targets:
        raise NotFound(f"model '{source}' not found")
    results = await send_each(gw, "POST", "/api/copy", targets, {"source": source, "destination": destination})
    return await _settle(gw, "copy", results, missing_ok=False)


async def delete(request: web.Request) -> web.Response:
    gw, snap, data = await _request(request)
    model = _allowed(request, snap, model_field(data))
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
    """Tee one upload to every healthy worker. Blobs are content-addressed (a worker stores a body
    only under its own sha256), so they need no model check: the `models` list is judged when a
    create names the model. The body is forwarded as received, within `[server] body_mib.blobs`."""
    gw = request.app[GATEWAY]
    digest = _digest(request)
    chunks = _blob_chunks(request, gw.holder.current)
    results = await tee_upload(gw, chunks, f"/api/blobs/{digest}", _managed(gw.holder.current))
    failed = [r for r in results if not r.ok]
    if any(r.status == 400 for r in failed):
        raise BadRequest(next(r.detail for r in failed if r.status == 400))
    if failed:
        raise UpstreamFailed("blob upload failed on " + "; ".join(f"{r.worker}: {r.detail}" for r in failed))
    return web.Response(status=201)


class UnsupportedEncoding(GatewayError):
    """A body in a Content-Encoding the endpoint cannot pass on as sent (415)."""

    status = 415


def _blob_chunks(request: web.Request, snap: Snapshot) -> AsyncIterator[bytes]:
    """The upload's bytes, refused before any worker is contacted when they cannot be sent as
    received (a Content-Encoding), or are declared over the limit."""
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        # Ollama stores a blob as the bytes it is sent (Go's server never decodes a request
        # body), but ours decodes before any handler runs: the worker would get other bytes, and
        # a small gzip body would expand on every worker. So say so instead of guessing.
        raise UnsupportedEncoding("blob uploads must not be Content-Encoded: send the file's own bytes",
                                  headers={"Accept-Encoding": "identity"})
    server = snap.config.server
    limit = server.body_mib.get("blobs")
    limit_bytes = None if limit is None else int(limit * _MIB)
    if limit_bytes is not None and request.content_length is not None and request.content_length > limit_bytes:
        raise PayloadTooLarge(f"blob of {request.content_length} bytes is over the {limit_bytes} byte limit "
                              "(server.body_mib.blobs)")
    return _read_blob(request, limit_bytes, server.body_timeout_s, server.blob_timeout_s)


async def _read_blob(request: web.Request, limit: int | None, gap_s: float, whole_s: float) -> AsyncIterator[bytes]:
    """A model file takes longer than one JSON body's deadline to arrive, so a blob has two: no pause
    longer than body_timeout_s between pieces (a stalled client), and the whole within blob_timeout_s
    (a trickling one). Either, or the size limit, ends the upload on every worker."""
    deadline, size = time.monotonic() + whole_s, 0
    while True:
        wait = min(gap_s, deadline - time.monotonic())
        try:
            async with asyncio.timeout(max(wait, 0)):
                chunk = await request.content.readany()
        except TimeoutError:
            raise RequestTimeout(f"no blob bytes for {gap_s:g}s (server.body_timeout_s)" if wait >= gap_s
                                 else f"blob not received within {whole_s:g}s (server.blob_timeout_s)") from None
        except RequestPayloadError:
            raise BadRequest(UNREADABLE_BODY) from None
        if not chunk:
            return
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge(f"blob is over the {limit} byte limit (server.body_mib.blobs)")
        yield chunk


def _digest(request: web.Request) -> str:
    digest = request.match_info["digest"]
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise BadRequest("invalid digest: expected sha256:<64 hex digits>")  # the path is not echoed
    return digest

