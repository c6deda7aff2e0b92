"""Value types that backends hand to the gateway, and the Backend protocol.

Backends know wire formats; they return these plain values and know nothing about
snapshots, routing or policy. Names here are exactly as the worker spelled them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from backends.usage import Usage


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model a worker holds on disk (one `/api/tags` entry). `upstream_id` is the worker's own
    id for it when that differs from the Ollama-style `name` (llama.cpp aliases, file names)."""

    name: str
    size: int
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    upstream_id: str | None = None


@dataclass(frozen=True, slots=True)
class ResidentModel:
    """A model loaded in a worker's memory (one `/api/ps` entry)."""

    name: str
    size: int
    size_vram: int
    expires_at: str | None = None
    context_length: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    upstream_id: str | None = None


@dataclass(frozen=True, slots=True)
class Probe:
    """What one active probe learned about a worker. `slots_total`/`slots_busy` when the
    worker reports them (llama.cpp), else None."""

    ok: bool
    error: str | None = None
    version: str | None = None
    models: tuple[ModelEntry, ...] = ()
    resident: tuple[ResidentModel, ...] = ()
    latency_s: float = 0.0
    slots_total: int | None = None
    slots_busy: int | None = None


@dataclass(frozen=True, slots=True)
class FrontRequest:
    """What the client asked, after the gateway resolved the model name."""

    endpoint: str  # ollama: chat | generate | embed | embeddings | show; openai: chat | completions | embeddings
    path: str
    body: bytes
    data: Mapping[str, Any]
    model: str  # the name clients see (Ollama-style)
    # The front API the client speaks: "ollama" (/api/*), "openai" (/v1 chat, completions, embeddings),
    # "anthropic" (/v1/messages) or "responses" (/v1/responses); backends.fronts prepares all but Ollama's.
    api: str = "ollama"


class AnswerTranslator(Protocol):
    """Turns one worker's answer into the client's shape (backends.answers.Translator): a stream
    chunk by chunk, then its tail, or a whole answer at once. Each call returns bytes to send."""

    def feed(self, chunk: bytes) -> bytes: ...

    def end(self) -> bytes: ...

    def whole(self, body: bytes) -> bytes: ...


class FrontAnswer(AnswerTranslator, Protocol):
    """How a worker's answer reaches a client of a front with its own answer grammar (every front but
    Ollama's): passed through (the worker speaks that API itself) or translated (from the worker's
    /v1/chat/completions). One object per attempt; the relay (gateway/relay.py, gateway/whole.py) calls:

    - stream: `feed(chunk)` -> whole events to send (never half an event: a cut must land between
      events), then `end()`; afterwards `finished` says whether the stream ended as the front's
      grammar ends a stream (its last event, or an error event), and `usage()` what it cost;
    - `cut(message)`: the front's own error event that ends a stream the worker cut or the gateway
      ended (sent after whole events only);
    - whole answer: `whole(body)` -> the 200 answer in the front's shape, then `usage()`;
    - `error(body, status)`: a worker's error answer (any shape: OpenAI's, Ollama's, HTML) in the
      front's error shape, under the same status.

    Raising one of backends.answers.MALFORMED from feed/end/whole marks the worker's answer malformed."""

    @property
    def finished(self) -> bool: ...

    def usage(self) -> Usage | None: ...

    def cut(self, message: str) -> bytes: ...

    def error(self, body: bytes, status: int) -> bytes: ...


@dataclass(slots=True)
class UpstreamCall:
    """The request as one worker kind takes it, and how to turn its answer into the client's shape.
    On the Ollama front, with no translator and no `whole`, bytes pass through untouched (Ollama
    workers); on the other fronts `reply` carries the answer (None on the OpenAI front means
    backends.fronts' default, the /v1 SSE relay)."""

    method: str
    path: str
    body: bytes | None
    translator: AnswerTranslator | None = None  # chat/generate, streamed or whole
    whole: Callable[[bytes], bytes] | None = None  # embed/show answers, whole only
    headers: dict[str, str] = field(default_factory=dict)
    front: str = "ollama"  # the client's API (FrontRequest.api), which shapes errors and stream cuts
    reply: FrontAnswer | None = None  # fronts other than Ollama's: stream, whole answer and errors


class Backend(Protocol):
    """Every call reads at most `max_bytes` of any one answer ([health] max_probe_kib) and follows
    no redirect (backends.upstream): a worker is trusted for tokens, not for control."""

    kind: str

    def prepare(self, front: FrontRequest, model_id: str, *, version: str | None = None,
                native: bool = True) -> UpstreamCall:
        """The client's request as this kind takes it for the worker's `model_id`; raises
        backends.translate.Unsupported for an endpoint the kind cannot serve. `version` is what the
        worker reported of itself (Probe.version; None when unknown): which fronts it serves natively."""
        ...

    async def probe(self, session: aiohttp.ClientSession, url: str, timeout_s: float, *,
                    headers: Mapping[str, str] | None = None, names: Mapping[str, str] | None = None,
                    max_bytes: int = ...) -> Probe: ...

    async def warm(self, session: aiohttp.ClientSession, url: str, model: str,
                   keep_alive: str | int | float | None, timeout_s: float,
                   headers: Mapping[str, str] | None = None, max_bytes: int = ...,
                   options: Mapping[str, Any] | None = None) -> None: ...

    async def shape(self, session: aiohttp.ClientSession, url: str, model: str,
                    timeout_s: float, max_bytes: int = ...,
                    headers: Mapping[str, str] | None = None) -> ModelShape | None: ...

    async def unload(self, session: aiohttp.ClientSession, url: str, model: str, timeout_s: float,
                     headers: Mapping[str, str] | None = None, max_bytes: int = ...) -> None:
        """Free the model's memory now; raises Unsupported where the worker cannot."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What sizes a model's KV cache, from the worker's model metadata (`/api/show` model_info)."""

    block_count: int
    head_count_kv: int
    head_dim: int
    context_length: int

    def kv_bytes(self, context: int, bytes_per_value: int = 2) -> int:
        """K and V, per layer, per position, f16 by default (Ollama's default cache type)."""
        ctx = min(context, self.context_length) if self.context_length else context
        return 2 * self.block_count * ctx * self.head_count_kv * self.head_dim * bytes_per_value
