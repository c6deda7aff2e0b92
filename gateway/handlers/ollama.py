"""Thin aiohttp handlers for Ollama's inference and listing endpoints (/api/*).

Inference (chat, generate, embed, embeddings, show) goes to one worker chosen by the
router and run by the proxy; listings (tags, ps, version) merge what the fleet says.
Model management that fans out to many workers lives in handlers/manage.py.
"""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from backends.base import FrontRequest
from gateway.context import GATEWAY, Gateway
from gateway.errors import GatewayError, ModelNotFound, NoCapacity
from gateway.handlers.common import (
    REQUEST_ID,
    account,
    model_field,
    new_outcome,
    parse_object,
    read_body,
    refusal,
    resolve,
)
from gateway.router import CPU_REFUSED, UNKNOWN_MODEL, Need, Plan, choose

RUNNING = "Ollama is running"
API_VERSION = "0.12.6"  # the Ollama API this gateway speaks, for fleets without Ollama workers


async def root(request: web.Request) -> web.Response:
    return web.Response(text=RUNNING)


async def infer(request: web.Request) -> web.StreamResponse:
    """chat, generate, embed, embeddings and show: one worker answers, chosen by the router."""
    gw = request.app[GATEWAY]
    snap = gw.holder.current
    outcome = new_outcome(request, request.path.rsplit("/", 1)[-1], "")
    try:
        body = await read_body(request, snap.config.server.max_body_mib)
        data = parse_object(body)
        asked = model_field(data)
        outcome.model = model = resolve(snap, asked)
        if snap.names.is_alias(asked):
            data["model"] = model  # the worker knows the model by its own name, not our alias
            data.pop("name", None)
            body = orjson.dumps(data)
        outcome.session = session_key(request, data, snap.config.routing.affinity)
        gw.inflight.requested(model, gw.clock())
        plan = await _plan(gw, model, outcome.session, need_of(data, len(body), outcome.endpoint, snap))
        if plan.verdict == UNKNOWN_MODEL:
            raise ModelNotFound(asked)
        if plan.verdict == CPU_REFUSED:
            raise NoCapacity(plan.note, snap.config.server.retry_after_s)
        front = FrontRequest(outcome.endpoint, request.path, body, data, model)
        return await gw.proxy.run(request, plan, front, outcome, request[REQUEST_ID])
    except GatewayError as exc:
        outcome.status = outcome.status or exc.status
        outcome.outcome = outcome.outcome if outcome.outcome != "error" else refusal(exc.status)
        raise
    finally:
        account(gw.metrics, snap, outcome)


def need_of(data: dict, body_size: int, endpoint: str, snap) -> Need:
    """Roughly what the request asks for: ~4 bytes a prompt token, num_predict or the default."""
    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    predict = options.get("num_predict")
    if endpoint not in ("chat", "generate"):
        predict = 0
    elif not isinstance(predict, int) or isinstance(predict, bool) or predict < 0:
        predict = snap.config.failover.default_num_predict
    return Need(prompt_tokens=body_size // 4, predict_tokens=predict)


async def _plan(gw: Gateway, model: str, session: str | None, need: Need) -> Plan:
    """A plan now, or after waiting in the model's queue while every copy is busy."""
    admission, config = gw.admission, gw.holder.current.config

    def plan() -> Plan:
        return choose(gw.holder.current, gw.inflight, model, session, admission.depth(model), need)

    return await admission.admit(model, plan, config.admission.queue_timeout_s, config.admission.max_queue,
                                 config.server.retry_after_s)


def session_key(request: web.Request, data: dict, affinity: bool) -> str | None:
    """One conversation's key: the client's X-Session-Id, else its system prompt and first user turn."""
    header = request.headers.get("X-Session-Id")
    if header:
        return "h:" + header[:256]
    if not affinity:
        return None
    messages = data.get("messages")
    if isinstance(messages, list):
        system = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"), "")
        first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), "")
    else:
        system, first = data.get("system", ""), str(data.get("prompt", ""))[:1024]
    if not system and not first:
        return None
    text = f"{system}\x00{first}".encode("utf-8", "replace")
    return "p:" + hashlib.blake2b(text, digest_size=8).hexdigest()


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
    snap = request.app[GATEWAY].holder.current
    merged: dict[str, dict] = {}
    for worker in snap.up_workers():
        for name, entry in worker.models.items():
            item = merged.setdefault(name, {**entry.raw, "workers": []})
            item["workers"].append(worker.name)
    return web.json_response({"models": list(merged.values())}, dumps=_dumps)


async def ps(request: web.Request) -> web.Response:
    """What is loaded now: every worker is probed afresh (residency changes by the second)."""
    gw = request.app[GATEWAY]
    await gw.prober.fresh()
    models = []
    for worker in gw.holder.current.up_workers():
        for name, r in worker.resident.items():
            models.append({"name": name, "model": name, "expires_at": r.expires_at, **r.raw,
                           "size": r.size, "size_vram": r.size_vram, "context_length": r.context_length,
                           "worker": worker.name})
    return web.json_response({"models": models}, dumps=_dumps)


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
