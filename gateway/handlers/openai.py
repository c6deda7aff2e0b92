"""Thin aiohttp handlers for the OpenAI-compatible front API (/v1/*).

Inference (chat completions, completions, embeddings) takes the same path as the Ollama API
(handlers/inference.py: router, admission, proxy with failover, metrics, one request.done line);
the backends pass /v1 bodies through to each worker kind. Model listings merge what the fleet
says, in OpenAI's list shape. Errors are raised, and shaped by gateway/errors.py from the path.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from backends.ollama import timestamp
from gateway.access import allowed_models
from gateway.context import GATEWAY
from gateway.errors import ModelNotFound
from gateway.handlers import openai_input
from gateway.handlers.common import resolve
from gateway.handlers.inference import Read, serve
from gateway.state import Snapshot


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, request.path, "openai", _reader("chat", openai_input.chat))


async def completions(request: web.Request) -> web.StreamResponse:
    return await serve(request, request.path, "openai", _reader("completions", openai_input.completion))


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(request, request.path, "openai", _reader("embeddings", openai_input.embedding))


def _reader(endpoint: str, check: Callable[[dict], str]) -> Callable[[dict, Snapshot], Read]:
    def read(data: dict, snap: Snapshot) -> Read:
        model = check(data)  # checks max_tokens / max_completion_tokens are positive integers
        if endpoint == "embeddings":
            return Read(endpoint, model, 0, False)
        limit = openai_input.max_tokens(data)
        return Read(endpoint, model, limit if isinstance(limit, int) else snap.config.routing.default_num_predict,
                    data.get("stream") is True)

    return read


async def list_models(request: web.Request) -> web.Response:
    """Every model a healthy worker holds, once, as OpenAI lists models."""
    merged = _merged(request.app[GATEWAY].holder.current)
    data = [merged[name] for name in allowed_models(request, list(merged))]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def one_model(request: web.Request) -> web.Response:
    snap = request.app[GATEWAY].holder.current
    asked = request.match_info["model"]
    model = resolve(snap, asked)
    found = _merged(snap).get(model) if allowed_models(request, [model]) else None
    if found is None:
        raise ModelNotFound(asked)
    return web.json_response(found, dumps=_dumps)


def _merged(snap: Snapshot) -> dict[str, dict]:
    """Every model a healthy worker holds, as OpenAI objects: built once per snapshot, not per request."""
    return snap.derived("openai.models", _merge)


def _merge(snap: Snapshot) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for worker in snap.up_workers():
        for name, entry in worker.models.items():
            if name not in merged:  # one date parse per model, not one per worker listing it
                merged[name] = model_object(name, entry.raw.get("modified_at"))
    return merged


def model_object(name: str, modified_at: object) -> dict:
    """One model as OpenAI describes it; owned_by is the namespace, as Ollama's own /v1/models says."""
    owner = name.split("/")[-2] if "/" in name else "library"
    return {"id": name, "object": "model", "created": max(0, int(timestamp(modified_at) or 0)), "owned_by": owner}


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()
