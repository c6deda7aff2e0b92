"""/admin/*: operator actions behind a bearer token (BEACON_ADMIN_TOKEN; unset disables them).

Drain and undrain a worker, reload the config now, warm or unload a model on a worker, and
explain where a hypothetical request would go. Every action is logged with what it changed.
Thin: state changes go through state's pure updaters, routing through router.choose. A drain is
also published through Redis for the other replicas and processes; under `serve --processes N`
a reload reaches every process (gateway/siblings.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from backends import for_kind
from backends.translate import Unsupported
from backends.worker_said import describe
from gateway import load_options, state, vram
from gateway.access import token_matches
from gateway.admission import ANONYMOUS, Tenant, tenant_of
from gateway.context import GATEWAY, Gateway
from gateway.errors import BadRequest, GatewayError, NotFound, Unauthorized, UpstreamFailed
from gateway.handlers.common import model_field, parse_object, read_body, resolve
from gateway.keep_alive import govern, model_settings
from gateway.load_options import LoadOptions
from gateway.residency import serves
from gateway.router import Need, choose
from gateway.siblings import SIBLINGS
from gateway.state import Snapshot, WorkerView

log = structlog.get_logger("gateway.admin")
Handler = Callable[[web.Request], Awaitable[web.Response]]


class AdminDisabled(GatewayError):
    status = 403


def guarded(handler: Handler) -> Handler:
    """`handler` behind the admin token (app.py wraps every /admin/ route of gateway/routes.py)."""
    async def check(request: web.Request) -> web.Response:
        token = request.app[GATEWAY].settings.admin_token
        if token is None or not token.get_secret_value():
            raise AdminDisabled("the admin API is disabled: start the gateway with BEACON_ADMIN_TOKEN set")
        if not token_matches(request, token.get_secret_value()):  # one parser for every token: no 500 on odd bytes
            raise Unauthorized("admin API: missing or wrong bearer token (Authorization: Bearer <token>)",
                               headers={"WWW-Authenticate": 'Bearer realm="beacon-gateway admin"'})
        return await handler(request)

    return check


def _worker(gw: Gateway, request: web.Request) -> WorkerView:
    name = request.match_info["name"]
    worker = gw.holder.current.worker(name)
    if worker is None:
        known = ", ".join(gw.holder.current.workers) or "none"
        raise NotFound(f"no worker named {name!r} (workers: {known})")
    return worker


async def drain(request: web.Request) -> web.Response:
    return await _set_drain(request, True)


async def undrain(request: web.Request) -> web.Response:
    return await _set_drain(request, False)


async def _set_drain(request: web.Request, drained: bool) -> web.Response:
    gw = request.app[GATEWAY]
    worker = _worker(gw, request)
    snap = gw.holder.update(lambda s: state.with_drain(s, worker.name, drained, gw.clock()))
    await gw.cluster.publish_drain(worker.name, drained)  # every replica and process applies it from Redis
    if drained != worker.drained:
        log.warning("worker.drained" if drained else "worker.undrained", worker=worker.name,
                    inflight=gw.inflight.get(worker.name))
    after = snap.workers[worker.name]
    inflight = gw.inflight.get(worker.name)
    return web.json_response({"worker": worker.name, "drained": after.drained, "inflight": inflight,
                              "state": after.live_state(inflight, gw.inflight.slow_reason(worker.name))})


async def reload(request: web.Request) -> web.Response:
    siblings = request.app.get(SIBLINGS)
    if siblings is not None:  # `serve --processes N`: every process reloads, and each says how it went
        status, body = await siblings.reload_all(request.app[GATEWAY].reloader, "admin API")
        return web.json_response(body, status=status)
    result = await request.app[GATEWAY].reloader.reload("admin API")
    body = result.as_dict()
    if result.result == "failed":
        body["error"] = f"config not reloaded ({len(result.errors)} errors); still running {result.version}"
        return web.json_response(body, status=422)
    return web.json_response(body)


async def warm(request: web.Request) -> web.Response:
    return await _model_action(request, "warm")


async def unload(request: web.Request) -> web.Response:
    return await _model_action(request, "unload")


async def _model_action(request: web.Request, action: str) -> web.Response:
    gw = request.app[GATEWAY]
    worker = _worker(gw, request)
    data = parse_object(await read_body(request, 1))
    model = resolve(gw.holder.current, model_field(data))
    if not worker.has(model) and action == "unload":
        raise NotFound(f"{model!r} is not on worker {worker.name}")
    if not worker.has(model) and worker.up:
        raise NotFound(f"{model!r} is not on worker {worker.name}: pull it there first")
    model_id = worker.upstream_id(model)
    config = gw.holder.current.config
    backend, timeout_s = for_kind(worker.config.kind), config.warmer.timeout_s
    auth, cap = worker.config.auth_headers(), config.health.max_probe_bytes
    try:
        if action == "warm":
            await backend.warm(gw.session, worker.url, model_id, data.get("keep_alive"), timeout_s, auth, cap)
        else:
            await backend.unload(gw.session, worker.url, model_id, timeout_s, auth, cap)
    except Unsupported as exc:
        raise BadRequest(f"{worker.name}: {exc}") from None
    except Exception as exc:  # the worker's failure, reported as such, by its name and never its address
        raise UpstreamFailed(f"{action} of {model} on {worker.name} failed: {describe(exc)}") from None
    if action == "warm":
        gw.metrics.count_load(gw.holder.current, worker.name, model, "admin")
    log.info(f"model.{action}ed", worker=worker.name, model=model,
             source="admin API")
    await gw.prober.refresh({worker.name})
    after = gw.holder.current.workers.get(worker.name)
    return web.json_response({"worker": worker.name, "model": model, "action": action,
                              "resident": bool(after and model in after.resident)})


async def explain(request: web.Request) -> web.Response:
    """Where a request would go now, and why, without sending anything."""
    gw = request.app[GATEWAY]
    data = parse_object(await read_body(request, 1))
    snap = gw.holder.current
    model = resolve(snap, model_field(data))
    session = data.get("session")
    if session is not None and not isinstance(session, str):
        raise BadRequest("session must be a string")
    tenant = _tenant(snap, data.get("client"))
    options, shown = _load_options(snap, model, data.get("options"))
    need = Need(_count(data, "prompt_tokens", 0), _count(data, "num_predict", snap.config.routing.default_num_predict),
                tenant.batch, options)
    queued = gw.admission.depth(model)
    # The whole order, not only the max_attempts candidates a request would try.
    plan = choose(snap, gw.load, model, session, queued, need, limit=len(snap.workers))
    return web.json_response({
        "model": model, "verdict": plan.verdict, "reason": plan.reason, "note": plan.note, "queued": queued,
        "tenant": {"client": tenant.name or None, "weight": tenant.weight, "priority": tenant.priority},
        "keep_alive": _keep_alive(snap, model, data.get("keep_alive")),
        "load_options": shown,
        "candidates": [{"worker": c.worker, "reason": c.reason, "loads": c.loads, "evicts": list(c.evicts)}
                       for c in plan.candidates],
        "workers": {w.name: _facts(gw, w, model) | _copy(gw, snap, w, model, options) for w in snap.workers.values()},
    })


def _keep_alive(snap: Snapshot, model: str, sent: object) -> dict:
    """What a request's keep_alive would become ([models."X"] request/min/max_keep_alive)."""
    if sent is not None and (isinstance(sent, bool) or not isinstance(sent, str | int | float)):
        raise BadRequest("keep_alive must be a number of seconds or a duration such as \"5m\"")
    governed = govern(model_settings(snap, model), sent)
    return {"sent": governed.sent, "to_worker": governed.value, "rule": governed.rule}


def _load_options(snap: Snapshot, model: str, sent: object) -> tuple[LoadOptions, dict]:
    """The load-time options a request with `options` would be routed by, after the [models."X"]
    rules (request_num_ctx, max_num_ctx, strip_load_options), and what explain shows of them."""
    if sent is not None and not isinstance(sent, dict):
        raise BadRequest("options must be an object, as in an Ollama request")
    governed = load_options.govern(model_settings(snap, model), sent)
    options = load_options.read_options(governed.options)
    return options, {"sent_num_ctx": governed.sent_num_ctx, "rules": list(governed.rules),
                     "routed_by": options.as_dict()}


def _copy(gw: Gateway, snap: Snapshot, w: WorkerView, model: str, options: LoadOptions) -> dict:
    """What is known of the worker's copy's load-time options, and whether it serves the request's."""
    resident = w.resident.get(model)
    sent = gw.load.copy_options(w.name, model)
    return {"context_length": resident.context_length if resident else None,
            "loaded_with": sent[0].as_dict() if sent else None,
            "serves_options": serves(w, model, gw.load, options, load_options.train_ctx(snap, model))}


def _tenant(snap: Snapshot, name: object) -> Tenant:
    """The tenant a request of client `name` would wait as (its weight and priority class)."""
    if name is None:
        return ANONYMOUS
    client = next((c for c in snap.config.clients if c.name == name), None)
    if client is None:
        raise BadRequest(f"client must name a [[clients]] entry; {name!r} is none")
    return tenant_of(client)


def _count(data: dict, key: str, default: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise BadRequest(f"{key} must be a non-negative integer")
    return value


def _facts(gw: Gateway, w: WorkerView, model: str) -> dict:
    return {"state": w.live_state(gw.inflight.get(w.name), gw.inflight.slow_reason(w.name)), "tier": w.tier,
            "has_model": w.has(model), "resident": model in w.resident, "inflight": gw.inflight.get(w.name),
            "model_inflight": gw.inflight.model_inflight(w.name, model),
            "learned_slots": gw.inflight.slots(w.name, model),
            "vram_free_bytes": vram.free(w), "last_used_s_ago": _ago(gw, gw.inflight.last_used(w.name, model))}


def _ago(gw: Gateway, t: float) -> float | None:
    return round(gw.clock() - t, 3) if t else None
