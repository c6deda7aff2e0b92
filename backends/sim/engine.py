"""The simulated worker's state machine: residency in a VRAM budget, serial loads,
eviction of idle models, per-model parallel slots, a bounded queue and keep-alive expiry.

Behaves like Ollama's scheduler as far as a gateway can observe. No HTTP here: the
aiohttp handlers in server.py drive it. Time comes from the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from backends.sim.catalog import GIB, SimModel, default_registry, normalise

MODES = ("ok", "slow", "hang", "error", "drop", "malformed", "gpu_lost")


class Busy(Exception):
    """The worker's queue is full: Ollama answers 503 server busy."""


@dataclass(slots=True)
class Loaded:
    model: SimModel
    size_vram: int
    expires_at: float = float("inf")
    active: int = 0
    loaded_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Stats:
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    evictions: list[str] = field(default_factory=list)
    requests: Counter = field(default_factory=Counter)
    cancelled: int = 0
    completed: int = 0


class SimWorker:
    def __init__(self, name: str = "sim", models: list[SimModel] | None = None, vram_bytes: int = 24 * GIB,
                 tier: str = "gpu", tokens_per_s: float = 400.0, load_s_per_gib: float = 0.4, num_parallel: int = 4,
                 max_queue: int = 512, max_loaded_models: int = 3, version: str = "0.12.6",
                 default_keep_alive_s: float = 300.0, pull_s_per_gib: float = 0.05,
                 registry: dict[str, SimModel] | None = None) -> None:
        self.name, self.tier, self.version = name, tier, version
        self.vram_bytes = vram_bytes if tier == "gpu" else 0
        self.tokens_per_s, self.load_s_per_gib, self.pull_s_per_gib = tokens_per_s, load_s_per_gib, pull_s_per_gib
        self.num_parallel, self.max_queue, self.max_loaded_models = num_parallel, max_queue, max_loaded_models
        self.default_keep_alive_s = default_keep_alive_s
        self.disk: dict[str, SimModel] = {m.name: m for m in models or []}
        self.registry = {**default_registry(), **self.disk, **(registry or {})}
        self.loaded: dict[str, Loaded] = {}
        self.blobs: dict[str, int] = {}
        self.stats = Stats()
        self.mode = "ok"
        self.unhung = asyncio.Event()
        self.unhung.set()
        self.queued = 0
        self.active = 0
        self._load_lock = asyncio.Lock()
        self._changed = asyncio.Condition()

    # -- modes -----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.mode = mode
        if mode == "hang":
            self.unhung.clear()
        else:
            self.unhung.set()

    def find(self, name: str) -> SimModel | None:
        return self.disk.get(normalise(name))

    # -- decode speed ----------------------------------------------------------------------
    def rate(self, lm: Loaded) -> float:
        rate = self.tokens_per_s
        if self.mode in ("slow", "gpu_lost"):
            rate /= 20
        elif self.tier == "gpu" and lm.size_vram < lm.model.size_bytes:
            rate *= 0.05 + 0.95 * lm.size_vram / max(1, lm.model.size_bytes)
        return rate

    def reported_vram(self, lm: Loaded) -> int:
        return 0 if self.mode == "gpu_lost" else lm.size_vram

    # -- slots and residency ---------------------------------------------------------------
    async def acquire(self, model: SimModel) -> tuple[Loaded, float]:
        """A slot on a loaded copy of `model`, loading it first if needed. Returns (copy, load seconds)."""
        if self.queued >= self.max_queue:
            raise Busy()
        self.queued += 1
        load_s = 0.0
        try:
            while True:
                lm = self.loaded.get(model.name)
                if lm is not None and lm.active < self.num_parallel:
                    lm.active += 1
                    self.active += 1
                    return lm, load_s
                if lm is None and not self._load_lock.locked():
                    load_s += await self._load(model)
                    continue
                async with self._changed:
                    await self._changed.wait()
        finally:
            self.queued -= 1

    async def release(self, lm: Loaded, keep_alive_s: float) -> None:
        lm.active -= 1
        self.active -= 1
        lm.expires_at = time.monotonic() + keep_alive_s
        if keep_alive_s == 0 and lm.active == 0:
            self._unload(lm.model.name)
        await self._notify()

    async def _load(self, model: SimModel) -> float:
        async with self._load_lock:
            if model.name in self.loaded:
                return 0.0
            while not self._make_room(model):
                async with self._changed:
                    await self._changed.wait()
            started = time.monotonic()
            await asyncio.sleep(model.size_bytes / GIB * self.load_s_per_gib)
            size_vram = 0 if self.tier == "cpu" else min(model.size_bytes, self.vram_bytes - self._vram_used())
            self.loaded[model.name] = Loaded(model, max(0, size_vram))
            self.stats.loads.append(model.name)
        await self._notify()
        return time.monotonic() - started

    def _vram_used(self) -> int:
        return sum(lm.size_vram for lm in self.loaded.values())

    def _make_room(self, model: SimModel) -> bool:
        """Unload idle models, soonest expiry first, until `model` fits; False if busy ones block it."""
        def fits() -> bool:
            count_ok = len(self.loaded) < self.max_loaded_models
            vram_ok = self.tier == "cpu" or self.vram_bytes - self._vram_used() >= min(model.size_bytes,
                                                                                       self.vram_bytes)
            return count_ok and vram_ok

        idle = sorted((lm for lm in self.loaded.values() if lm.active == 0), key=lambda lm: lm.expires_at)
        while not fits() and idle:
            victim = idle.pop(0).model.name
            self._unload(victim)
            self.stats.evictions.append(victim)
        return fits() or not self.loaded

    def _unload(self, name: str) -> None:
        if self.loaded.pop(name, None) is not None:
            self.stats.unloads.append(name)

    def unload_now(self, name: str) -> bool:
        lm = self.loaded.get(name)
        if lm is None or lm.active:
            return False
        self._unload(name)
        return True

    def expire(self) -> None:
        now = time.monotonic()
        for name, lm in list(self.loaded.items()):
            if lm.active == 0 and lm.expires_at <= now:
                self._unload(name)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def state(self) -> dict:
        return {
            "name": self.name, "tier": self.tier, "mode": self.mode,
            "resident": {n: {"active": lm.active, "size_vram": lm.size_vram} for n, lm in self.loaded.items()},
            "loads": self.stats.loads, "unloads": self.stats.unloads, "evictions": self.stats.evictions,
            "requests": dict(self.stats.requests), "active": self.active, "queued": self.queued,
            "cancelled": self.stats.cancelled, "completed": self.stats.completed,
        }
