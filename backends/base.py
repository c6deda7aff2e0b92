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
