"""Thin aiohttp handlers for Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens): what
Claude Code and the anthropic SDKs send.

/v1/messages takes the one inference path (handlers/inference.py: router, admission, proxy with
failover, metrics, one request.done line); backends/anthropic_front.py passes it through to workers
that serve it and translates it to chat completions for the others. count_tokens generates nothing,
so it takes no slot, no plan and teaches the learning rules nothing: a llama-server worker that holds
the model counts with its own tokenizer (its /v1/messages/count_tokens), and where none does, or it
fails, the answer is Ollama's own estimate (characters / 4), which is all an Ollama worker could give.
"""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import orjson
from aiohttp import web

from backends.anthropic_front import estimate_tokens
from backends.base import FrontRequest
from backends.upstream import read_capped, worker_json
from backends.worker_said import describe
from gateway.access import CLIENT, allow_model
from gateway.context import GATEWAY, Gateway
from gateway.errors import ModelNotFound
from gateway.handlers import anthropic_input
from gateway.handlers.common import REQUEST_ID, account, read_object, resolve
from gateway.handlers.inference import Read, serve
from gateway.outcome import Asked, Ended, Relayed, Trail, outcome_of, timer
from gateway.proxy import prepare
from gateway.state import Snapshot, WorkerView

COUNT_S = 5.0  # a worker's count slower than this is not waited for: the estimate answers instead
COUNT_BYTES = 64 * 1024  # `{"input_tokens": N}` is a few bytes: anything much longer is not an answer


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request, "/v1/messages", "anthropic", _read)


def _read(data: dict, snap: Snapshot) -> Read:
    model = anthropic_input.messages(data)  # max_tokens is required and positive: it is the token budget
    return Read("messages", model, data["max_tokens"], data.get("stream") is True)


async def count_tokens(request: web.Request) -> web.StreamResponse:
    gw, started = request.app[GATEWAY], timer()
    snap = gw.holder.current
    asked = Asked(request[REQUEST_ID], request.path, "count_tokens", "", started)
    trail, relayed, error = Trail(), None, None
    try:
        body, data = await read_object(request, snap.config.server.max_body_mib)
        wanted = anthropic_input.count_tokens(data)
        model = resolve(snap, wanted)
        client = request.get(CLIENT)
        asked = replace(asked, model=model, client=client.name if client else None)
        allow_model(request, model)
        if not snap.holders(model):
            raise ModelNotFound(wanted)
        if snap.names.is_alias(wanted):
            data["model"] = model
            body = orjson.dumps(data)
        front = FrontRequest("count_tokens", request.path, body, data, model, "anthropic")
        tokens = await _counted(gw, snap, front, asked, trail)
        if tokens is None:
            tokens, trail.reason = estimate_tokens(data), "estimate"
        response = web.json_response({"input_tokens": tokens}, headers={"X-Request-ID": asked.request_id})
        relayed = Relayed(response, 200, timer() - started, Ended.OK)
        return response
    except BaseException as exc:
        error = exc
        raise
    finally:
        account(gw.metrics, snap, outcome_of(asked, trail, relayed, error))


async def _counted(gw: Gateway, snap: Snapshot, front: FrontRequest, asked: Asked, trail: Trail) -> int | None:
    """The count of the first serving llama-server worker that has the model loaded, or None."""
    for name in sorted(snap.holders(front.model), key=snap.holders(front.model).__getitem__):
        worker = snap.worker(name)
        if worker is None or not worker.serving or worker.config.kind != "llamacpp" \
                or front.model not in worker.resident:
            continue
        try:
            tokens = await _ask(gw, snap, worker, front, asked)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            trail.attempts.append(f"{worker.name}: {describe(exc)}")
            continue
        trail.worker, trail.reason = worker.name, "tokenized"
        return tokens
    return None


async def _ask(gw: Gateway, snap: Snapshot, worker: WorkerView, front: FrontRequest, asked: Asked) -> int:
    call = prepare(worker, front, asked.request_id)
    timeout = aiohttp.ClientTimeout(total=min(COUNT_S, snap.config.failover.first_byte_s(worker.tier)),
                                    sock_connect=snap.config.failover.connect_timeout_s)
    async with gw.session.request(call.method, worker.url + call.path, data=call.body, headers=call.headers,
                                  timeout=timeout, allow_redirects=False) as resp:
        answer = worker_json(await read_capped(resp, COUNT_BYTES, "a count_tokens answer"))
        if resp.status != 200:
            raise ValueError(f"answered {resp.status}")
    tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError("answered no input_tokens count")
    return tokens
