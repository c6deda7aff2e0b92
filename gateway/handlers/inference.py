"""The one inference path every front API shares: read and check the body, resolve the model,
plan (router + admission), run the plan (proxy), account (metrics + one `request.done` line).

A front (handlers/ollama.py for /api/*, handlers/openai.py for /v1/*) only says how to read its
request: which model it names, what it asks and how many tokens it may generate. No routing,
relaying or error shaping lives here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson
from aiohttp import web

from backends.base import FrontRequest
from gateway.access import CLIENT, allow_model
from gateway.admission import ANONYMOUS, Tenant, tenant_of
from gateway.context import GATEWAY, Gateway
from gateway.errors import ModelNotFound, NoCapacity
from gateway.handlers import unload
from gateway.handlers.common import REQUEST_ID, account, read_object, resolve
from gateway.keep_alive import governed_body
from gateway.load_options import NO_OPTIONS, LoadOptions, governed_options, read_options
from gateway.outcome import Asked, Ended, Trail, outcome_of, timer
from gateway.router import CPU_REFUSED, UNKNOWN_MODEL, Need, Plan, choose
from gateway.state import Snapshot


@dataclass(frozen=True, slots=True)
class Read:
    """What a front read from a request body: the FrontRequest endpoint, the model as the client
    named it, whether the answer streams, and the token budget: how many tokens the answer may
    generate (0 when it generates none). The budget is computed here once, by the front that
    knows its API's fields; the plan and the timeout both use it."""

    endpoint: str
    model: str
    predict: int
    stream: bool


Reader = Callable[[dict, Snapshot], Read]  # raises BadRequest when the body is not a valid request


async def serve(request: web.Request, label: str, api: str, read: Reader) -> web.StreamResponse:
    """One request to one worker; `label` is the endpoint in metrics and in the request.done line.
    The snapshot is read once here and once per (re-)plan; the plan's snapshot runs the request."""
    gw, started = request.app[GATEWAY], timer()
    snap = gw.holder.current
    asked = Asked(request[REQUEST_ID], label, "", "", started)
    trail, relayed, error = Trail(), None, None
    waiting_since: float | None = None  # when it began to plan (and perhaps queue): admission's share of the time
    try:
        body, data = await read_object(request, snap.config.server.max_body_mib)
        wants = read(data, snap)
        model = resolve(snap, wants.model)
        asked = Asked(asked.request_id, label, wants.endpoint, model, started, wants.stream, wants.predict)
        allow_model(request, model)
        renamed = snap.names.is_alias(wants.model)
        if renamed:
            data["model"] = model  # the worker knows the model by its own name, not our alias
            data.pop("name", None)
        kept = governed_body(snap, model, data) if api == "ollama" else None  # operators own keep-alive
        fixed = governed_options(snap, model, data) if api == "ollama" and wants.endpoint != "show" else None
        if renamed or kept or fixed:
            body = orjson.dumps(data)
        unloads = unload.unload_of(wants.endpoint, data) if api == "ollama" else ""  # keep_alive 0, as governed
        fair = snap.config.admission.fair_share
        tenant = tenant_of(request.get(CLIENT)) if fair else ANONYMOUS  # whose request this is in the queues
        client = request.get(CLIENT)
        asked = replace(asked, session=session_key(request, data, snap.config.routing.affinity),
                        client=client.name if client else None, priority=tenant.priority,
                        options=load_options_of(api, wants.endpoint, data))
        if unloads == unload.ONLY:  # no worker runs it: every worker holding the model unloads it
            relayed = await unload.everywhere(gw, snap, asked, wants.model, trail)
            return relayed.response
        known = await shared_session(gw, asked.session)
        need = Need(len(body) // 4, asked.predict, tenant.batch, asked.options)
        waiting_since = timer()
        planned, plan = await plan_for(gw, model, asked.session, need, tenant)
        asked, waiting_since = replace(asked, queued_s=timer() - waiting_since), None
        if plan.verdict == UNKNOWN_MODEL:
            raise ModelNotFound(wants.model)
        if asked.endpoint != "show":  # demand the warmer follows: inference (a show loads nothing), known models
            gw.inflight.requested(model, gw.clock())
        if unloads:  # it runs, then unloads: the warmer must not keep it loaded either
            gw.inflight.unloaded(model, gw.clock())
        if plan.verdict == CPU_REFUSED:
            raise NoCapacity(plan.note, planned.config.server.retry_after_s)
        front = FrontRequest(asked.endpoint, request.path, body, data, model, api)
        relayed = await gw.proxy.run(request, planned, plan, front, asked, trail)
        if asked.session and relayed.ended is Ended.OK and trail.worker != known and gw.cluster.shared:
            gw.cluster.later(gw.cluster.remember_session(asked.session, trail.worker))  # the next turn may
        return relayed.response  # land on another replica; a conversation that stays put costs no write
    except BaseException as exc:
        error = exc
        raise
    finally:
        if waiting_since is not None:  # refused or gone while waiting for its turn
            asked = replace(asked, queued_s=timer() - waiting_since)
        account(gw.metrics, snap, outcome_of(asked, trail, relayed, error))


def load_options_of(api: str, endpoint: str, data: dict) -> LoadOptions | None:
    """The load-time options a worker loads the model with for this request, read once here (after
    the operators' rules): an Ollama request's `options`; the other fronts have none, so the worker's
    defaults. None for a show, which loads nothing."""
    if endpoint == "show":
        return None
    return read_options(data.get("options")) if api == "ollama" else NO_OPTIONS


async def plan_for(gw: Gateway, model: str, session: str | None, need: Need,
                   tenant: Tenant = ANONYMOUS) -> tuple[Snapshot, Plan]:
    """A plan now, or after waiting in the model's queue (its fair share of it) while every copy
    is busy; with the snapshot it was made from, which the request then runs on."""
    admission, config = gw.admission, gw.holder.current.config
    made_from: list[Snapshot] = []

    def plan() -> Plan:  # the queue before this request: ours, and the other replicas' as of the latest sync
        queued = admission.depth(model) + gw.cluster.view.depths.get(model, 0)  # read afresh each re-plan
        snap = gw.holder.current  # afresh each re-plan too: a wait outlives health and config changes
        made_from[:] = [snap]
        return choose(snap, gw.load, model, session, queued, need)

    plan_made = await admission.admit(model, plan, config.admission.queue_timeout_s, config.admission.max_queue,
                                      config.server.retry_after_s, tenant)
    return made_from[0], plan_made


async def shared_session(gw: Gateway, key: str | None) -> str | None:
    """With replicas sharing state, the worker that served this conversation last, whichever
    replica sent it there, from Redis (one bounded round trip) into our own table; returned, so
    that an answer from the same worker writes nothing back."""
    if not key or not gw.cluster.shared:
        return None
    worker = await gw.cluster.session_worker(key)
    if worker is not None:
        gw.inflight.remember_session(key, worker)
    return worker


def session_key(request: web.Request, data: dict, affinity: bool) -> str | None:
    """One conversation's key: the client's X-Session-Id, else its system prompt and first user turn."""
    header = request.headers.get("X-Session-Id")
    if header:  # hashed like the rest: every key is 16 characters, whatever the client sends
        return hashlib.blake2b(b"h\x00" + header.encode("utf-8", "replace"), digest_size=8).hexdigest()
    if not affinity:
        return None
    messages = data.get("messages")
    if messages is None and request.path == "/v1/responses":  # the Responses API: instructions, then input
        given = data.get("input")
        messages = [{"role": "system", "content": data.get("instructions")},
                    *(given if isinstance(given, list) else [{"role": "user", "content": given}])]
    if isinstance(messages, list):
        system = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"),
                      data.get("system", ""))  # Anthropic's Messages API keeps the system prompt at the top
        first = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), "")
    else:
        system, first = data.get("system", ""), data.get("prompt", "")
    system, first = _head(system), _head(first)
    if not system and not first:
        return None
    text = f"p\x00{system}\x00{first}".encode("utf-8", "replace")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _head(content: object) -> str:
    """The start of a prompt's text, which says which conversation it is. Never the whole of it, and
    never str() of whatever else a client sent (a list of a million items would become megabytes)."""
    if isinstance(content, str):
        return content[:4096]
    if isinstance(content, list):  # OpenAI content parts: their text
        return "".join(p["text"][:4096] for p in content[:16] if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
