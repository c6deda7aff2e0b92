"""The simulated worker's embedding endpoints, as Ollama answers them: /api/embed (several inputs,
`dimensions`, `truncate`) and the legacy /api/embeddings; an empty input only loads the model.

Vectors are deterministic unit vectors (content.py); slots and residency come from the engine.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from local_workers.sim.content import count_tokens, paced, vector
from local_workers.sim.engine import SimWorker
from local_workers.sim.inference import acquire, keep_alive_of, load_seconds, misbehaviour, requested_model
from local_workers.sim.models import SimModel
from local_workers.sim.wire import SIM_WORKER, SimError, json_response, read_json


async def embed(request: web.Request) -> web.Response:
    """/api/embed: one deterministic unit vector per input; an empty input only loads the model."""
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    inputs = data.get("input")
    if isinstance(inputs, str):
        inputs = [inputs] if inputs else []
    elif inputs is None:
        inputs = []
    elif not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        raise SimError(400, "invalid input type")
    name, model = requested_model(worker, data)
    dims = data.get("dimensions")
    dims = dims if isinstance(dims, int) and 0 < dims < model.embedding_length else model.embedding_length
    started = time.monotonic()
    vectors, count, load_s = await embed_inputs(request, worker, model, keep_alive_of(worker, data), inputs, dims,
                                                truncate=data.get("truncate") is not False)
    if not inputs:
        return json_response({"model": name, "embeddings": []})
    return misbehaviour(request, worker) or json_response({
        "model": name, "embeddings": vectors, "total_duration": int((time.monotonic() - started) * 1e9),
        "load_duration": int(load_s * 1e9), "prompt_eval_count": count})


async def embeddings(request: web.Request) -> web.Response:
    """/api/embeddings (legacy): `{"embedding": [...]}`; an empty prompt only loads the model."""
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name, model = requested_model(worker, data)
    prompt = data.get("prompt") or ""
    if not isinstance(prompt, str):
        raise SimError(400, "json: cannot unmarshal prompt: not a string")
    inputs = [prompt] if prompt else []
    vectors, _, _ = await embed_inputs(request, worker, model, keep_alive_of(worker, data), inputs,
                                       model.embedding_length)
    if not vectors:
        return json_response({"embedding": []})
    return misbehaviour(request, worker) or json_response({"embedding": vectors[0]})


async def embed_inputs(request: web.Request, worker: SimWorker, model: SimModel, keep_alive_s: float,
                       inputs: list[str], dims: int, truncate: bool = True) -> tuple[list[list[float]], int, float]:
    """Take a slot, spend the prompt-processing time, make the vectors: (vectors, tokens, load seconds).
    Shared with /v1/embeddings."""
    started = time.monotonic()
    try:
        res = await acquire(worker, model, keep_alive_s)
        try:
            counts = [count_tokens(t) for t in inputs]
            if not truncate and any(c > model.context_length for c in counts):
                raise SimError(400, "input exceeds maximum context length")
            async for _ in paced(request, worker, res, [""] * min(4, len(inputs))):
                pass  # prompt processing takes a little time, as it does on a worker
        finally:
            worker.release(res)
    except (asyncio.CancelledError, ConnectionResetError):
        worker.stats.cancelled += 1
        raise asyncio.CancelledError() from None
    worker.stats.completed += bool(inputs) and worker.mode not in ("drop", "malformed")
    count = sum(min(c, model.context_length) for c in counts)
    return [vector(text, dims) for text in inputs], count, load_seconds(res, started)
