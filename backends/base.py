"""Value types that backends hand to the gateway, and the Backend protocol.

Backends know wire formats; they return these plain values and know nothing about
snapshots, routing or policy. Names here are exactly as the worker spelled them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model a worker holds on disk (one `/api/tags` entry)."""

    name: str
    size: int
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ResidentModel:
    """A model loaded in a worker's memory (one `/api/ps` entry)."""

    name: str
    size: int
    size_vram: int
    expires_at: str | None = None
    context_length: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Probe:
    """What one active probe learned about a worker."""

    ok: bool
    error: str | None = None
    version: str | None = None
    models: tuple[ModelEntry, ...] = ()
    resident: tuple[ResidentModel, ...] = ()
    latency_s: float = 0.0


class Backend(Protocol):
    kind: str

    async def probe(self, session: aiohttp.ClientSession, url: str, timeout_s: float) -> Probe: ...

    async def warm(self, session: aiohttp.ClientSession, url: str, model: str,
                   keep_alive: str | int | float | None, timeout_s: float) -> None: ...

    async def shape(self, session: aiohttp.ClientSession, url: str, model: str,
                    timeout_s: float) -> ModelShape | None: ...


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
