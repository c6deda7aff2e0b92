"""Ollama workers: the active probe (/api/tags, /api/ps, /api/version) and its parsing.

Requests to Ollama workers are passed through byte for byte by the proxy; this module
only reads what a worker says about itself. It knows nothing about routing or health.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp_retry import ExponentialRetry, RetryClient
from yarl import URL

from backends import fronts
from backends.base import FrontRequest, ModelEntry, ModelShape, Probe, ResidentModel, UpstreamCall
from backends.upstream import PROBE_MAX_BYTES, read_capped, worker_json
from backends.worker_said import describe_probe, error_start

# A pooled keep-alive connection the worker already closed shows up as a disconnect on
# first use; one quick retry absorbs that without hiding a worker that is really down.
_PROBE_RETRY = ExponentialRetry(
    attempts=2, start_timeout=0.02, exceptions={aiohttp.ServerDisconnectedError}, retry_all_server_errors=False
)


# Warm-ups and metadata reads are idempotent, so a jittered retry on the same worker is right.
_WARM_RETRY = ExponentialRetry(attempts=3, start_timeout=0.2, exceptions={aiohttp.ClientConnectionError})


class OllamaBackend:
    kind = "ollama"

    async def probe(self, session: aiohttp.ClientSession, url: str, timeout_s: float, *,
                    headers: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None,
                    max_bytes: int = PROBE_MAX_BYTES) -> Probe:
        started = time.perf_counter()
        client = RetryClient(client_session=session, retry_options=_PROBE_RETRY)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            tags, ps, version = await asyncio.gather(
                _get_json(client, url, "/api/tags", timeout, headers, max_bytes),
                _get_json(client, url, "/api/ps", timeout, headers, max_bytes),
                _get_json(client, url, "/api/version", timeout, headers, max_bytes),
            )
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return Probe(ok=False, error=describe_probe(exc), latency_s=time.perf_counter() - started)
        return Probe(
            ok=True,
            version=str(version.get("version") or "")[:64] or None,  # shown to clients: a worker's word, bounded
            models=parse_tags(tags),
            resident=parse_ps(ps),
            latency_s=time.perf_counter() - started,
        )

    async def probe_resident(self, session: aiohttp.ClientSession, url: str, timeout_s: float, *,
                             headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES) -> Probe:
        """The part of `probe` that changes by the second, what is loaded (/api/ps), in one request
        instead of three. `models` and `version` stay empty: the gateway keeps its last full probe's
        (a fleet of a thousand workers reads those less often than it reads residency)."""
        started, timeout = time.perf_counter(), aiohttp.ClientTimeout(total=timeout_s)
        try:
            try:  # the session itself, not a RetryClient: this runs for every worker every round
                ps = await _get_json(session, url, "/api/ps", timeout, headers, max_bytes)
            except aiohttp.ServerDisconnectedError:  # a pooled connection the worker had closed: once more
                ps = await _get_json(session, url, "/api/ps", timeout, headers, max_bytes)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            return Probe(ok=False, error=describe_probe(exc), latency_s=time.perf_counter() - started)
        return Probe(ok=True, resident=parse_ps(ps), latency_s=time.perf_counter() - started)

    def prepare(self, front: FrontRequest, model_id: str, *, version: str | None = None,
                native: bool = True) -> UpstreamCall:
        """Ollama workers take the client's own bytes on the same path; the other fronts are
        backends.fronts' (which of them this worker serves natively depends on its version)."""
        if front.api != "ollama":
            return fronts.prepare(front, model_id, self.kind, version, native)
        return UpstreamCall("POST", front.path, front.body)

    async def warm(self, session: aiohttp.ClientSession, url: str, model: str,
                   keep_alive: str | int | float | None, timeout_s: float,
                   headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES,
                   options: Mapping[str, Any] | None = None) -> None:
        """Load a model (or re-arm its keep_alive) with Ollama's empty-prompt generate; an embedding
        model, which Ollama refuses to generate with ("does not support generate"), with an empty
        /api/embed, which loads any model. `options`: the runner options the copy was loaded with
        (num_ctx...): a re-arm without them would reload it at the worker's defaults."""
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        if options:
            body["options"] = dict(options)
        client = RetryClient(client_session=session, retry_options=_WARM_RETRY)
        action = "unload" if keep_alive == 0 else "warm-up"
        tries: tuple[tuple[str, dict[str, Any]], ...] = (("/api/generate", {}), ("/api/embed", {"input": []}))
        detail = ""
        for path, extra in tries:
            async with client.post(f"{url}{path}", data=orjson.dumps(body | extra), headers=headers,
                                   allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                if resp.status == 200:
                    await read_capped(resp, max_bytes, "[health] max_probe_kib")
                    return
                detail = await error_start(resp)
                if not (resp.status == 400 and "does not support generate" in detail):
                    raise ValueError(f"{action} of {model} answered {resp.status}: {detail!r}")
        raise ValueError(f"{action} of {model} answered 400 to generate and embed: {detail!r}")

    async def unload(self, session: aiohttp.ClientSession, url: str, model: str, timeout_s: float,
                     headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES) -> None:
        """Ollama unloads a model at once on an empty-prompt generate with keep_alive 0."""
        await self.warm(session, url, model, 0, timeout_s, headers, max_bytes)

    async def shape(self, session: aiohttp.ClientSession, url: str, model: str, timeout_s: float,
                    max_bytes: int = PROBE_MAX_BYTES, headers: Mapping[str, str] | None = None) -> ModelShape | None:
        """The model's KV-cache shape from /api/show model_info, or None when it does not say."""
        client = RetryClient(client_session=session, retry_options=_WARM_RETRY)
        async with client.post(f"{url}/api/show", data=orjson.dumps({"model": model}), allow_redirects=False,
                               headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return None
            show = worker_json(await read_capped(resp, max_bytes, "[health] max_probe_kib"))
        info = show.get("model_info") if isinstance(show, dict) else None
        return parse_shape(info) if isinstance(info, dict) else None


def parse_shape(info: Mapping[str, Any]) -> ModelShape | None:
    arch = info.get("general.architecture")
    try:
        heads = int(info[f"{arch}.attention.head_count"])
        width = int(info[f"{arch}.embedding_length"])
        return ModelShape(
            block_count=int(info[f"{arch}.block_count"]),
            head_count_kv=int(info.get(f"{arch}.attention.head_count_kv") or heads),
            head_dim=int(info.get(f"{arch}.attention.key_length") or width // heads),
            context_length=int(info.get(f"{arch}.context_length") or 0),
        )
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


async def _get_json(client: RetryClient | aiohttp.ClientSession, url: str, path: str, timeout: aiohttp.ClientTimeout,
                    headers: Mapping[str, str] | None, max_bytes: int) -> Mapping[str, Any]:
    async with client.get(_target(url, path), timeout=timeout, headers=headers or None, allow_redirects=False) as resp:
        if resp.status != 200:
            raise ValueError(f"GET {path} answered {resp.status}")
        data = worker_json(await read_capped(resp, max_bytes, "[health] max_probe_kib"))
        if not isinstance(data, dict):
            raise ValueError(f"GET {path} did not answer a JSON object")
        return data


@functools.lru_cache(maxsize=4096)
def _target(url: str, path: str) -> URL:
    """A worker's probe address, parsed once: a probe round asks every worker, every interval_s."""
    return URL(url + path)


def parse_tags(data: Mapping[str, Any]) -> tuple[ModelEntry, ...]:
    entries = []
    for item in data.get("models") or ():
        name = item.get("name") or item.get("model") if isinstance(item, dict) else None
        if isinstance(name, str) and name:
            entries.append(ModelEntry(name=name, size=_int(item.get("size")), raw=item))
    return tuple(entries)


def parse_ps(data: Mapping[str, Any]) -> tuple[ResidentModel, ...]:
    resident = []
    for item in data.get("models") or ():
        name = item.get("name") or item.get("model") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            continue
        resident.append(ResidentModel(
            name=name,
            size=_int(item.get("size")),
            size_vram=_int(item.get("size_vram")),
            expires_at=item.get("expires_at") if isinstance(item.get("expires_at"), str) else None,
            context_length=_int(item.get("context_length")) or None,
            raw=item,
        ))
    return tuple(resident)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def timestamp(text: object) -> float | None:
    """Seconds since 1970 from a time as Ollama writes it (RFC 3339 with Go's nanoseconds, which
    datetime reads from Python 3.11 on); None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
