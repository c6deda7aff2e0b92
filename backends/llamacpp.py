"""llama.cpp `llama-server` workers, single-model (-m) and router mode (--models-dir):
probe /health, /v1/models, /props, /slots and in router mode /models; warm through
/models/load; requests translated as for OpenAI-compatible workers, raw prompts to /completion.

Knows wire formats only; residency and slots go back to the gateway as a Probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp_retry import ExponentialRetry, RetryClient

from backends.base import FrontRequest, ModelEntry, Probe, ResidentModel, UpstreamCall
from backends.capabilities import llamacpp_capabilities
from backends.openai_compat import OpenAIBackend, get_json, ollama_name, show_answer, tags_entry
from backends.translate import Unsupported
from backends.upstream import PROBE_MAX_BYTES, worker_json
from backends.worker_said import describe_probe, error_start, message_in

_LOAD_RETRY = ExponentialRetry(attempts=3, start_timeout=0.2, exceptions={aiohttp.ClientConnectionError})


class LlamaCppBackend(OpenAIBackend):
    kind = "llamacpp"
    native_raw = True

    async def probe(self, session: aiohttp.ClientSession, url: str, timeout_s: float, *,
                    headers: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None,
                    max_bytes: int = PROBE_MAX_BYTES) -> Probe:
        started = time.perf_counter()
        try:
            health, (router_status, router) = await asyncio.gather(
                get_json(session, f"{url}/health", timeout_s, headers, max_bytes),
                get_json(session, f"{url}/models", timeout_s, headers, max_bytes))
            if health[0] != 200:
                return Probe(ok=False, error=_health_error(health), latency_s=time.perf_counter() - started)
            listed = router.get("data") if router_status == 200 and isinstance(router, dict) else None
            if isinstance(listed, list) and any(isinstance(m, dict) and "status" in m for m in listed):
                probe = self._router_probe(names, listed)  # router mode: every model has a status
            else:
                probe = await self._single_probe(session, url, timeout_s, headers, names, max_bytes)
        except (TimeoutError, aiohttp.ClientError, ValueError, TypeError) as exc:
            return Probe(ok=False, error=describe_probe(exc), latency_s=time.perf_counter() - started)
        return Probe(**{**probe, "latency_s": time.perf_counter() - started})

    async def _single_probe(self, session, url, timeout_s, headers, names, max_bytes) -> dict[str, Any]:
        (status, listing), (_, props), (slots_status, slots) = await asyncio.gather(
            get_json(session, f"{url}/v1/models", timeout_s, headers, max_bytes),
            get_json(session, f"{url}/props", timeout_s, headers, max_bytes),
            get_json(session, f"{url}/slots", timeout_s, headers, max_bytes))
        if status != 200 or not isinstance(listing, dict):
            raise ValueError(f"GET /v1/models answered {status}")
        entries = [_entry(item, names) for item in listing.get("data") or () if isinstance(item, dict)]
        resident = tuple(ResidentModel(e.name, e.size, e.size, None, _ctx(props), e.raw, e.upstream_id)
                         for e in entries)
        total, busy = _slots(props, slots if slots_status == 200 else None)
        return {"ok": True, "models": tuple(entries), "resident": resident, "slots_total": total, "slots_busy": busy}

    @staticmethod
    def _router_probe(names: Mapping[str, str] | None, listed: list) -> dict[str, Any]:
        entries, resident, slots = [], [], []
        for item in listed:
            if not isinstance(item, dict) or not item.get("id"):
                continue
            entry = _entry(item, names)
            entries.append(entry)
            if _status(item) == "loaded":
                resident.append(ResidentModel(entry.name, entry.size, entry.size, None, None, entry.raw,
                                              entry.upstream_id))
                slots.append(_parallel(item))
        known = [n for n in slots if n]
        return {"ok": True, "models": tuple(entries), "resident": tuple(resident),
                "slots_total": min(known) if known else None}

    def show_call(self, front: FrontRequest, model_id: str) -> UpstreamCall:
        """One `GET /props` per show, read under [server] max_answer_mib as every answer is; not
        cached: /api/show is rare, and llama-server answers /props from memory (asleep too)."""
        def whole(body: bytes) -> bytes:
            said = worker_json(body) if body else {}
            props = said if isinstance(said, dict) else {}
            return orjson.dumps(show_answer(front.model, props, model_id, llamacpp_capabilities(props, model_id)))

        return UpstreamCall("GET", f"/props?model={model_id}", None, whole=whole)

    async def warm(self, session: aiohttp.ClientSession, url: str, model: str, keep_alive, timeout_s: float,
                   headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES,
                   options: Mapping[str, Any] | None = None) -> None:
        """Router mode: ask the server to load the model. A single-model server has it loaded already.
        The answer's body is never read beyond an error's first bytes."""
        client = RetryClient(client_session=session, retry_options=_LOAD_RETRY)
        async with client.post(f"{url}/models/load", data=orjson.dumps({"model": model}), headers=headers,
                               timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False) as resp:
            if resp.status == 404:
                return  # single-model mode has no /models/load: nothing to warm
            if resp.status >= 400:
                raise ValueError(f"/models/load {model} answered {resp.status}: {await error_start(resp)!r}")


    async def unload(self, session: aiohttp.ClientSession, url: str, model: str, timeout_s: float,
                     headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES) -> None:
        """Router mode unloads on request; a single-model server holds its one model for life."""
        async with session.post(f"{url}/models/unload", data=orjson.dumps({"model": model}), headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout_s), allow_redirects=False) as resp:
            if resp.status == 404:
                raise Unsupported("a single-model llama-server cannot unload its model (only router mode can)")
            if resp.status >= 400:
                raise ValueError(f"/models/unload {model} answered {resp.status}: {await error_start(resp)!r}")


def _entry(item: Mapping[str, Any], names: Mapping[str, str] | None) -> ModelEntry:
    model_id = str(item["id"])
    meta = found if isinstance(found := item.get("meta"), dict) else {}
    size = found if isinstance(found := meta.get("size"), int) else 0
    name = ollama_name(model_id, names)
    extra = {"llamacpp": {"id": model_id, "status": _status(item)}}
    return ModelEntry(name, size, tags_entry(name, size, extra=extra), model_id)


def _parallel(item: Mapping[str, Any]) -> int | None:
    """A router-mode model's slots, from the --parallel its instance was started with."""
    status = found if isinstance(found := item.get("status"), dict) else {}
    args = given if isinstance(given := status.get("args"), list) else []
    for flag in ("--parallel", "-np"):
        if flag in args and args.index(flag) + 1 < len(args) and str(args[args.index(flag) + 1]).isdigit():
            return int(args[args.index(flag) + 1])
    return None


def _status(item: Mapping[str, Any]) -> str | None:
    status = item.get("status")
    return status.get("value") if isinstance(status, dict) else status if isinstance(status, str) else None


def _ctx(props: Any) -> int | None:
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) else None


def _slots(props: Any, slots: Any) -> tuple[int | None, int | None]:
    total = props.get("total_slots") if isinstance(props, dict) else None
    busy = sum(1 for s in slots if isinstance(s, dict) and s.get("is_processing")) if isinstance(slots, list) else None
    return (total if isinstance(total, int) and total > 0 else None), busy


def _health_error(health: tuple[int, Any]) -> str:
    status, body = health
    message = message_in(body)
    return f"/health answered {status}" + (f": {message[:200]}" if message else "")

