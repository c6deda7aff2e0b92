"""OpenAI-compatible workers (kind "openai": LocalAI/AIKit, vLLM, llama-cpp-python's server):
probe /v1/models, and carry Ollama requests over /v1 with answers translated back.

Models are taken as always resident unless the server says otherwise. Knows wire formats
only; the gateway decides where requests go.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import partial
from typing import Any

import aiohttp
import orjson

from backends import fronts
from backends.answers import Translator, embed_answer
from backends.base import FrontRequest, ModelEntry, ModelShape, Probe, ResidentModel, UpstreamCall
from backends.capabilities import openai_capabilities
from backends.translate import Unsupported, chat_body, embed_body, generate_body
from backends.upstream import PROBE_MAX_BYTES, read_capped, worker_json
from backends.worker_said import describe_probe

WORKER_TEMPLATE = "{{- /* the worker applies its own chat template to .Messages and .Tools */ -}}"


def ollama_name(model_id: str, names: Mapping[str, str] | None = None) -> str:
    """How a worker's model id appears to Ollama clients: the configured name, else the id
    (a file path loses its folders and .gguf) with ":latest" when it has no tag."""
    for name, mapped in (names or {}).items():
        if mapped == model_id:
            return name
    base = model_id.rsplit("/", 1)[-1] if model_id.endswith(".gguf") else model_id
    base = base[:-5] if base.endswith(".gguf") else base
    return base if ":" in base.rsplit("/", 1)[-1] else f"{base}:latest"


def tags_entry(name: str, size: int = 0, family: str = "", extra: Mapping[str, Any] | None = None) -> dict:
    return {"name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": size, "digest": "",
            "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family] if family else [],
                        "parameter_size": "", "quantization_level": ""}, **(extra or {})}


async def get_json(session: aiohttp.ClientSession, url: str, timeout_s: float,
                   headers: Mapping[str, str] | None = None, max_bytes: int = PROBE_MAX_BYTES) -> tuple[int, Any]:
    """(status, parsed body or None); a body over max_bytes is AnswerTooLarge, a failed probe."""
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s),
                           allow_redirects=False) as resp:
        body = await read_capped(resp, max_bytes, "[health] max_probe_kib")
        try:
            return resp.status, worker_json(body) if body else None
        except ValueError:  # orjson's decode error is one, and so is a body too costly to parse
            return resp.status, None


class OpenAIBackend:
    kind = "openai"
    native_raw = False  # raw prompts go to /v1/completions

    async def probe(self, session: aiohttp.ClientSession, url: str, timeout_s: float, *,
                    headers: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None,
                    max_bytes: int = PROBE_MAX_BYTES) -> Probe:
        started = time.perf_counter()
        try:
            status, listing = await get_json(session, f"{url}/v1/models", timeout_s, headers, max_bytes)
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Probe(ok=False, error=describe_probe(exc), latency_s=time.perf_counter() - started)
        if status != 200 or not isinstance(listing, dict):
            return Probe(ok=False, error=f"GET /v1/models answered {status}", latency_s=time.perf_counter() - started)
        entries = [ModelEntry(n, 0, tags_entry(n), mid) for mid in model_ids(listing) if (n := ollama_name(mid, names))]
        resident = tuple(ResidentModel(e.name, 0, 0, None, None, e.raw, e.upstream_id) for e in entries)
        return Probe(ok=True, models=tuple(entries), resident=resident, latency_s=time.perf_counter() - started)

    def prepare(self, front: FrontRequest, model_id: str, *, version: str | None = None,
                native: bool = True) -> UpstreamCall:
        if front.api != "ollama":  # the other fronts are backends.fronts' (llama-server's native ones too)
            return fronts.prepare(front, model_id, self.kind, version, native)
        data = dict(front.data)
        if front.endpoint == "chat":
            return _post("/v1/chat/completions", chat_body(data, model_id), Translator(front.model, "chat"))
        if front.endpoint == "generate":
            path, body = generate_body(data, model_id, native_raw=self.native_raw)
            return _post(path, body, Translator(front.model, "generate", native=path == "/completion"))
        if front.endpoint in ("embed", "embeddings"):
            legacy = front.endpoint == "embeddings"
            call = _post("/v1/embeddings", embed_body(data, model_id, legacy))
            call.whole = partial(embed_answer, model=front.model, legacy=legacy, started=time.monotonic())
            return call
        if front.endpoint == "show":
            return self.show_call(front, model_id)
        raise Unsupported(f"/api/{front.endpoint} is not supported by this worker")

    def show_call(self, front: FrontRequest, model_id: str) -> UpstreamCall:
        """The server is only asked whether it has the model; what it can do comes from its id."""
        return UpstreamCall("GET", f"/v1/models/{model_id}", None, whole=lambda body: orjson.dumps(
            show_answer(front.model, {}, model_id, openai_capabilities(model_id))))

    async def warm(self, session, url, model, keep_alive, timeout_s, headers=None, max_bytes=PROBE_MAX_BYTES,
                   options=None) -> None:
        return None  # an OpenAI-compatible server keeps its models loaded itself

    async def shape(self, session, url, model, timeout_s, max_bytes=PROBE_MAX_BYTES, headers=None) -> ModelShape | None:
        return None

    async def unload(self, session, url, model, timeout_s, headers=None, max_bytes=PROBE_MAX_BYTES) -> None:
        raise Unsupported("an OpenAI-compatible worker manages its own models: it has no unload")


def model_ids(listing: Mapping[str, Any]) -> list[str]:
    return [str(item["id"]) for item in listing.get("data") or () if isinstance(item, dict) and item.get("id")]


def show_answer(name: str, props: Mapping[str, Any], model_id: str, capabilities: list[str] | None = None) -> dict:
    """Ollama's /api/show, from what an OpenAI-compatible or llama.cpp worker tells about a model
    (backends.capabilities). A worker that shows no template but takes tools gets a template that
    says so: clients such as LiteLLM look for "tools" in it."""
    settings = props.get("default_generation_settings") or {}
    template = props.get("chat_template") or (WORKER_TEMPLATE if "tools" in (capabilities or ()) else "")
    return {"license": "", "modelfile": f"# served by a {('llama.cpp' if props else 'OpenAI-compatible')} worker\n"
            f"FROM {props.get('model_path') or model_id}\n", "parameters": "",
            "template": template, "details": tags_entry(name)["details"],
            "model_info": {"general.architecture": props.get("model_arch") or "unknown",
                           "general.context_length": settings.get("n_ctx")},
            "capabilities": capabilities or ["completion"], "modified_at": "1970-01-01T00:00:00Z"}


def _post(path: str, body: dict, translator: Translator | None = None) -> UpstreamCall:
    return UpstreamCall("POST", path, orjson.dumps(body), translator=translator)
