"""The simulated worker's model management, as Ollama answers it: /api/pull, /api/push and
/api/create with NDJSON progress (or one object when stream is false), /api/copy, /api/delete,
and HEAD/POST /api/blobs/sha256:<hex>.

Changes only the worker's disk and blob store (delete also unloads). No gateway imports.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

import orjson
from aiohttp import web

from local_workers.sim.engine import SimWorker
from local_workers.sim.models import SimModel, normalise
from local_workers.sim.wire import (
    NDJSON,
    SIM_WORKER,
    SimError,
    error,
    json_response,
    model_field,
    read_json,
    want_stream,
)

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")
_NO_MANIFEST = "pull model manifest: file does not exist"
_STEPS = 4  # progress lines per big layer


class Progress:
    """Ollama's progress answer: NDJSON status lines, or with stream false only the last one.
    A failure before anything was written is a plain JSON error with its status, else an error line."""

    def __init__(self, request: web.Request, stream: bool) -> None:
        self.request, self.stream = request, stream
        self.resp: web.StreamResponse | None = None

    async def send(self, line: dict) -> None:
        if not self.stream:
            return
        if self.resp is None:
            self.resp = web.StreamResponse(headers={"Content-Type": NDJSON})
            await self.resp.prepare(self.request)
        await self.resp.write(orjson.dumps(line) + b"\n")

    async def fail(self, message: str, status: int = 500) -> web.StreamResponse:
        if self.resp is None:
            return error(status, message)
        await self.resp.write(orjson.dumps({"error": message}) + b"\n")
        await self.resp.write_eof()
        return self.resp

    async def succeed(self) -> web.StreamResponse:
        if not self.stream:
            return json_response({"status": "success"})
        await self.send({"status": "success"})
        assert self.resp is not None, "send() opens the stream"
        await self.resp.write_eof()
        return self.resp

    async def layers(self, verb: str, model: SimModel, seconds: float) -> None:
        """The weights layer in a few progress steps over `seconds`, then the small layers at once."""
        digest = model.digest
        for k in range(1, _STEPS + 1):
            await asyncio.sleep(seconds / _STEPS)
            await self.send({"status": f"{verb} {digest[7:19]}", "digest": digest, "total": model.size_bytes,
                             "completed": model.size_bytes * k // _STEPS})
        for small in _small_layers(model):
            await self.send({"status": f"{verb} {small[7:19]}", "digest": small, "total": 96, "completed": 96})


def _small_layers(model: SimModel) -> list[str]:
    """Digests of the template and params layers a real model also has."""
    return ["sha256:" + hashlib.sha256(f"{model.name}/{part}".encode()).hexdigest() for part in ("template", "params")]


def _manifest_path(name: str) -> str:
    base, _, tag = normalise(name).rpartition(":")
    parts = base.split("/")
    parts = ["registry.ollama.ai", "library"][: 3 - len(parts)] + parts if len(parts) < 3 else parts
    return f"/root/.ollama/models/manifests/{'/'.join(parts)}/{tag}"


def _valid_name(data: dict) -> str:
    name = model_field(data)
    if not name.strip():
        raise SimError(400, "invalid model name")
    return name


async def pull(request: web.Request) -> web.StreamResponse:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    progress = Progress(request, want_stream(data))
    model = worker.registry.get(normalise(_valid_name(data)))
    if not await _pull_into(worker, progress, model):
        return await progress.fail(_NO_MANIFEST)
    return await progress.succeed()


async def _pull_into(worker: SimWorker, progress: Progress, model: SimModel | None) -> bool:
    """Fetch `model` from the registry onto the worker's disk, saying how it goes; False if unknown."""
    await progress.send({"status": "pulling manifest"})
    if model is None:
        return False
    await progress.layers("pulling", model, model.size_gib * worker.pull_s_per_gib)
    await progress.send({"status": "verifying sha256 digest"})
    await progress.send({"status": "writing manifest"})
    worker.put_on_disk(model)
    return True


async def push(request: web.Request) -> web.StreamResponse:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name = model_field(data)
    if not name:
        raise SimError(400, "model is required")
    progress = Progress(request, want_stream(data))
    await progress.send({"status": "retrieving manifest"})
    model = worker.find(name)
    if model is None:
        await progress.send({"status": "couldn't retrieve manifest"})
        return await progress.fail(f"open {_manifest_path(name)}: no such file or directory")
    await progress.layers("pushing", model, model.size_gib * worker.pull_s_per_gib)
    await progress.send({"status": "pushing manifest"})
    return await progress.succeed()


async def create(request: web.Request) -> web.StreamResponse:
    """A new model from an on-disk (or pullable) model, or from uploaded blobs."""
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name = _valid_name(data)
    progress = Progress(request, want_stream(data))
    files = data.get("files")
    if data.get("from"):
        source = worker.find(str(data["from"]))
        if source is None and await _pull_into(worker, progress, worker.registry.get(normalise(str(data["from"])))):
            source = worker.find(str(data["from"]))
        if source is None:
            return await progress.fail(_NO_MANIFEST)
        layers = [source.digest, *_small_layers(source)]
    elif isinstance(files, dict) and files:
        missing = [d for d in files.values() if _blob_key(str(d)) not in worker.blobs]
        if missing:
            return await progress.fail(f"open /root/.ollama/models/blobs/{str(missing[0]).replace(':', '-')}: "
                                       "no such file or directory")
        await progress.send({"status": "parsing GGUF"})
        layers = [_blob_key(str(d)) for d in files.values()]
        source = SimModel(name, sum(worker.blobs[d] for d in layers))
    else:
        return await progress.fail("neither 'from' or 'files' was specified", 400)
    for digest in layers:
        await progress.send({"status": f"using existing layer {digest}"})
    for key in ("template", "system", "parameters", "license", "messages"):
        if data.get(key):
            made = hashlib.sha256(orjson.dumps(data[key], option=orjson.OPT_SORT_KEYS)).hexdigest()
            await progress.send({"status": f"creating new layer sha256:{made}"})
    quantize = str(data.get("quantize") or "").upper()
    await progress.send({"status": "writing manifest"})
    worker.put_on_disk(SimModel(name, source.size_bytes, source.family, source.parameter_size,
                                quantize or source.quantization_level, source.context_length,
                                source.embedding_length))
    return await progress.succeed()


async def copy(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    source, destination = str(data.get("source") or ""), str(data.get("destination") or "")
    if not source.strip():
        raise SimError(400, f'source "{source}" is invalid')
    if not destination.strip():
        raise SimError(400, f'destination "{destination}" is invalid')
    model = worker.find(source)
    if model is None:
        raise SimError(404, f'model "{source}" not found')
    worker.put_on_disk(SimModel(destination, model.size_bytes, model.family, model.parameter_size,
                                model.quantization_level, model.context_length, model.embedding_length))
    return web.Response(status=200)


async def delete(request: web.Request) -> web.Response:
    worker = request.app[SIM_WORKER]
    data = await read_json(request)
    name = model_field(data)
    if not name.strip():
        raise SimError(400, f'name "{name}" is invalid')
    model = worker.find(name)
    if model is None:
        raise SimError(404, f"model '{name}' not found")
    worker.remove_from_disk(model)
    return web.Response(status=200)


def _blob_key(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if not match:
        raise SimError(400, "invalid digest format")
    return "sha256:" + match.group(1).lower()


async def blob_head(request: web.Request) -> web.Response:
    digest = request.match_info["digest"]
    if _blob_key(digest) not in request.app[SIM_WORKER].blobs:
        raise SimError(404, f'blob "{digest}" not found')
    return web.Response(status=200)


async def blob_post(request: web.Request) -> web.Response:
    """Store the body under its sha256: 201 when new, 200 when already there, 400 on a mismatch.
    Unlike Ollama (which answers 200 unread for a stored digest) the body is always checked."""
    worker, digest = request.app[SIM_WORKER], request.match_info["digest"]
    key = _blob_key(digest)
    hasher, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(1 << 20):
        hasher.update(chunk)
        size += len(chunk)
    got = "sha256:" + hasher.hexdigest()
    if got != key:
        raise SimError(400, f'digest mismatch, expected "{digest}", got "{got}"')
    existed = key in worker.blobs
    worker.blobs[key] = size
    return web.Response(status=200 if existed else 201)
