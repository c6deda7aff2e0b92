"""A discrete-event model of a GPU fleet for routing benchmarks: Ollama-like workers
(VRAM budget, serial loads, idle models evicted, per-model slots, FIFO wait) in simulated time.

No sockets, no sleeping, no asyncio: a heap of events. The same worker model serves every
routing policy; only the eviction order differs for the offline-optimum baseline.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

PREFILL_S = 0.05


@dataclass
class Request:
    rid: int
    arrival: float
    model: str
    tokens: int
    worker: str = ""
    start: float | None = None
    waited_for_load: bool = False
    done_at: float | None = None
    claim: object = None


@dataclass
class Copy:
    size: float
    active: int = 0
    last_used: float = 0.0


@dataclass
class Worker:
    name: str
    tier: str
    vram_gib: float
    slots: int
    rate_scale: float = 1.0
    resident: dict[str, Copy] = field(default_factory=dict)
    loading: str | None = None
    waiting: deque = field(default_factory=deque)

    def used(self) -> float:
        return sum(c.size for c in self.resident.values()) + (0.0 if self.loading is None else 0.0)

    def outstanding(self) -> int:
        return len(self.waiting) + sum(c.active for c in self.resident.values())


class Fleet:
    """Workers plus an event heap. `on_start`/`on_done` hooks let a policy observe the requests."""

    def __init__(self, workers: list[Worker], sizes: dict[str, float], rates: dict[str, float],
                 load_fixed_s: float, load_gib_per_s: float, victim_order=None) -> None:
        self.workers = {w.name: w for w in workers}
        self.sizes, self.rates = sizes, rates
        self.load_fixed_s, self.load_gib_per_s = load_fixed_s, load_gib_per_s
        self.victim_order = victim_order  # None = least recently used (Ollama-like)
        self.now = 0.0
        self.events: list = []
        self.seq = itertools.count()
        self.loads = 0
        self.load_seconds = 0.0
        self.on_start = lambda req: None
        self.on_done = lambda req: None

    def at(self, t: float, kind: str, payload) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, payload))

    def load_time(self, model: str) -> float:
        return self.load_fixed_s + self.sizes[model] / self.load_gib_per_s

    def submit(self, req: Request, worker: str) -> None:
        req.worker = worker
        self.workers[worker].waiting.append(req)
        self._advance(self.workers[worker])

    def _advance(self, w: Worker) -> None:
        """Start what can start, in arrival order: first requests for loaded models (a model that
        just loaded serves the requests it loaded for), then at most one load at a time."""
        if w.tier == "cpu":
            for req in list(w.waiting):
                if w.resident.setdefault("*", Copy(0.0)).active < w.slots:
                    self._start(w, req, w.resident["*"])
            return
        for req in list(w.waiting):
            copy = w.resident.get(req.model)
            if copy is not None and copy.active < w.slots:
                self._start(w, req, copy)
        for req in list(w.waiting):
            if req.model in w.resident or w.loading is not None:
                req.waited_for_load = req.waited_for_load or req.model not in w.resident
                continue
            req.waited_for_load = True
            if not self._make_room(w, req.model):
                break  # Ollama waits for busy models to finish before it loads another
            w.loading = req.model
            seconds = self.load_time(req.model)
            self.loads += 1
            self.load_seconds += seconds
            self.at(self.now + seconds, "loaded", (w.name, req.model))

    def _make_room(self, w: Worker, model: str) -> bool:
        need = self.sizes[model]
        idle = [(m, c) for m, c in w.resident.items() if c.active == 0]
        if self.victim_order:
            order = self.victim_order(w, idle, self.now)
        else:
            order = sorted(idle, key=lambda t: t[1].last_used)  # least recently used first
        for m, _ in order:
            if w.vram_gib - w.used() >= need:
                break
            del w.resident[m]
        return w.vram_gib - w.used() >= need

    def _start(self, w: Worker, req: Request, copy: Copy) -> None:
        w.waiting.remove(req)
        copy.active += 1
        copy.last_used = self.now
        req.start = self.now
        self.on_start(req)
        rate = self.rates[req.model] * w.rate_scale
        self.at(self.now + PREFILL_S + req.tokens / rate, "done", req)

    def step(self) -> tuple[str, object] | None:
        if not self.events:
            return None
        self.now, _, kind, payload = heapq.heappop(self.events)
        if kind == "loaded":
            name, model = payload
            w = self.workers[name]
            w.loading = None
            w.resident[model] = Copy(self.sizes[model], last_used=self.now)
            self._advance(w)
        elif kind == "done":
            w = self.workers[payload.worker]
            copy = w.resident.get(payload.model if w.tier == "gpu" else "*")
            copy.active -= 1
            copy.last_used = self.now
            payload.done_at = self.now
            self.on_done(payload)
            self._advance(w)
        return kind, payload
