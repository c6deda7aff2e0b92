"""A discrete-event model of an Ollama fleet for routing benchmarks, the trace it replays and the
offline references: GPU workers with a VRAM budget, one load at a time, idle models evicted (least
recently used unless told otherwise), per-model slots with a FIFO wait, one copy of a model per worker
with one context (a request next in line that asks another num_ctx reloads it once it is idle, as
Ollama's needsReload); a CPU worker holding every model.
Simulated time only (a heap of events): no sockets, no asyncio, no sleeping, no gateway imports.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

PREFILL_S = 0.05  # a ~100-token prompt on a GPU; the CPU worker is CPU_SLOWDOWN times slower at both
CPU_SLOWDOWN = 20.0
MEAN_TOKENS = 150
DEFAULT_CTX = 4096  # the context a worker gives a request that sets no num_ctx (Ollama's automatic one)
# name -> (GiB resident, tokens/s of one stream on a GPU): Q4 sizes, decode roughly memory-bound.
MODELS: dict[str, tuple[float, float]] = {
    "llama3.2:1b": (1.3, 400.0), "llama3.2:3b": (2.0, 250.0), "mistral:7b": (4.1, 140.0),
    "llama3.1:8b": (4.9, 120.0), "llama2:13b": (7.4, 80.0), "phi4:14b": (9.0, 75.0),
    "codestral:22b": (12.5, 50.0), "gemma3:27b": (16.0, 42.0), "qwen2.5:32b": (19.0, 36.0),
    "codellama:34b": (20.0, 34.0), "llama3.3:70b": (40.0, 25.0),
}


@dataclass(eq=False)
class Request:
    rid: int
    arrival: float
    model: str
    tokens: int
    worker: str = ""
    sent: float | None = None  # handed to a worker (after any wait at the gateway)
    ready: float | None = None  # its model was loaded and ready for it on that worker
    start: float | None = None  # got a slot
    prefill_s: float = 0.0
    decode_s: float = 0.0
    done_at: float | None = None
    waited_for_load: bool = False
    triggered_load: bool = False
    num_ctx: int | None = None  # as the client sent it; None: the worker's default

    @property
    def ttft(self) -> float:
        return self.start + self.prefill_s - self.arrival

    @property
    def ctx(self) -> int:
        return self.num_ctx or DEFAULT_CTX


@dataclass(eq=False)
class Copy:
    size: float
    active: int = 0
    last_used: float = 0.0
    ready: bool = False
    draining: bool = False  # marked to unload once idle, so a waiting load cannot starve
    owed: int = 0  # requests queued for it before it was marked: Ollama's runner already holds them
    reload: bool = False  # a request came for it after it was marked: it will load again
    ctx: int = DEFAULT_CTX  # the context it was loaded with


@dataclass(eq=False)
class Worker:
    name: str
    tier: str
    vram_gib: float
    slots: int
    max_loaded: int = 0  # OLLAMA_MAX_LOADED_MODELS; 0 = VRAM is the only limit
    copies: dict[str, Copy] = field(default_factory=dict)
    waiting: dict[str, deque] = field(default_factory=lambda: defaultdict(deque))
    load_queue: deque = field(default_factory=deque)
    loading: str | None = None

    def used(self) -> float:
        return sum(c.size for c in self.copies.values())

    def fits(self, size: float) -> bool:
        room = not self.max_loaded or len(self.copies) < self.max_loaded
        return room and self.vram_gib - self.used() >= size

    def holds(self, model: str, ctx: int | None = None) -> bool:
        """Loaded or loading (with context `ctx`, when given), and still taking requests."""
        copy = self.copies.get(model)
        return copy is not None and not copy.draining and (ctx is None or copy.ctx == ctx)

    def outstanding(self) -> int:
        return sum(c.active for c in self.copies.values()) + sum(len(q) for q in self.waiting.values())


class Fleet:
    """Workers plus an event heap. `step()` handles worker events itself and hands back the rest
    ("arrive", "tick") for the routing policy; `on_start`/`on_done` let a policy watch requests."""

    def __init__(self, workers: list[Worker], models: dict[str, tuple[float, float]], load_fixed_s: float = 1.0,
                 load_gib_per_s: float = 2.0, victim_key: Callable[[str, Copy], object] | None = None) -> None:
        self.workers = {w.name: w for w in workers}
        self.models, self.load_fixed_s, self.load_gib_per_s = models, load_fixed_s, load_gib_per_s
        self.victim_key = victim_key or (lambda model, copy: copy.last_used)  # Ollama: equal keep-alives = LRU
        self.now, self.events, self.seq = 0.0, [], itertools.count()
        self.loads, self.load_seconds, self.avoidable_loads = 0, 0.0, 0
        self.on_start: Callable[[Request], None] = lambda req: None
        self.on_done: Callable[[Request], None] = lambda req: None
        for w in workers:
            if w.tier == "cpu":
                w.copies["*"] = Copy(0.0, ready=True)  # holds every model, never loads

    def at(self, t: float, kind: str, payload=None) -> None:
        heapq.heappush(self.events, (t, next(self.seq), kind, payload))

    def step(self) -> tuple[str, object] | None:
        if not self.events:
            return None
        self.now, _, kind, payload = heapq.heappop(self.events)
        if kind == "loaded":
            self._loaded(*payload)
        elif kind == "done":
            self._done(payload)
        return kind, payload

    def submit(self, req: Request, name: str) -> None:
        w = self.workers[name]
        req.worker, req.sent = name, self.now
        key = req.model if w.tier == "gpu" else "*"
        copy = w.copies.get(key)
        other_ctx = copy is not None and key != "*" and copy.ctx != req.ctx and not copy.draining
        if copy is None or not copy.ready or copy.draining or other_ctx:
            req.waited_for_load = True
        if (copy is None and key not in w.load_queue) or (copy is not None and copy.draining and not copy.reload) \
                or other_ctx:
            req.triggered_load = True
            self.avoidable_loads += self._loaded_elsewhere_with_a_slot(w, key, req.ctx)
            if copy is not None:
                copy.reload = True
        w.waiting[key].append(req)
        if copy is None:
            self._want_load(w, key)
        else:
            self._grant(w, key)

    def _loaded_elsewhere_with_a_slot(self, here: Worker, model: str, ctx: int = DEFAULT_CTX) -> bool:
        """S3's 'avoidable load', judged when the request that causes it is sent: another GPU worker
        has the model ready, with the request's context, with a free slot (a reload of a draining
        copy counts too)."""
        for w in self.workers.values():
            c = w.copies.get(model) if w is not here and w.tier == "gpu" else None
            if c is not None and c.ready and not c.draining and c.active < w.slots and not w.waiting[model] \
                    and c.ctx == ctx:
                return True
        return False

    def _grant(self, w: Worker, key: str) -> None:
        copy, queue = w.copies[key], w.waiting[key]
        while queue and copy.ready and (copy.owed or not copy.draining) and copy.active < w.slots:
            if key != "*" and queue[0].ctx != copy.ctx:
                self._reload(w, key, copy)
                return
            copy.owed = max(0, copy.owed - 1)
            self._start(w, copy, queue.popleft())

    def _reload(self, w: Worker, key: str, copy: Copy) -> None:
        """The next in line asks another context: the copy takes no new requests and, once idle,
        unloads and loads again for it (Ollama's needsReload)."""
        copy.draining, copy.owed = True, 0
        if not copy.active:
            self._unload(w, key)

    def _start(self, w: Worker, copy: Copy, req: Request) -> None:
        copy.active += 1
        copy.last_used = req.start = self.now
        req.ready = req.sent if req.ready is None else req.ready
        slow = CPU_SLOWDOWN if w.tier == "cpu" else 1.0
        req.prefill_s = PREFILL_S * slow
        req.decode_s = req.tokens * slow / self.models[req.model][1]
        self.on_start(req)
        self.at(self.now + req.prefill_s + req.decode_s, "done", req)

    def _done(self, req: Request) -> None:
        w = self.workers[req.worker]
        key = req.model if w.tier == "gpu" else "*"
        copy = w.copies[key]
        copy.active -= 1
        copy.last_used = req.done_at = self.now
        self._grant(w, key)  # the worker hands the slot on before the gateway hears of the answer
        if copy.draining and not copy.active and not copy.owed and w.copies.get(key) is copy:
            self._unload(w, key)
        self._try_load(w)
        self.on_done(req)

    def _loaded(self, w: Worker, model: str) -> None:
        w.loading = None
        w.copies[model].ready = True
        for req in w.waiting[model]:
            req.ready = self.now
        self._grant(w, model)
        self._try_load(w)

    def _unload(self, w: Worker, model: str) -> None:
        del w.copies[model]
        if w.waiting[model]:  # requests queued behind a drained copy need it back
            self._want_load(w, model)

    def _want_load(self, w: Worker, model: str) -> None:
        if model not in w.load_queue:
            w.load_queue.append(model)
        self._try_load(w)

    def _try_load(self, w: Worker) -> None:
        """One load at a time, in the order first asked for; a load that needs busy models gone waits."""
        while w.loading is None and w.load_queue:
            model = w.load_queue[0]
            if not w.waiting[model] or model in w.copies:
                w.load_queue.popleft()  # nobody needs it any more, or a draining copy reloads when it goes
                continue
            if not self._make_room(w, model):
                return
            w.load_queue.popleft()
            seconds = self.load_fixed_s + self.models[model][0] / self.load_gib_per_s
            w.copies[model], w.loading = Copy(self.models[model][0], ctx=w.waiting[model][0].ctx), model
            self.loads, self.load_seconds = self.loads + 1, self.load_seconds + seconds
            self.at(self.now + seconds, "loaded", (w, model))

    def _make_room(self, w: Worker, model: str) -> bool:
        size = self.models[model][0]
        while not w.fits(size):
            idle = [(m, c) for m, c in w.copies.items() if c.ready and not c.active]
            if not idle:
                self._drain_for(w, size)
                return False
            del w.copies[min(idle, key=lambda mc: self.victim_key(*mc))[0]]  # idle means nobody waits for it
        return True

    def _drain_for(self, w: Worker, size: float) -> None:
        """Only busy models stand in the way: mark enough of them to unload when the requests they
        hold end (new ones wait for a reload), as the project's simulated Ollama worker does."""
        busy = sorted(((m, c) for m, c in w.copies.items() if c.ready and not c.draining),
                      key=lambda mc: self.victim_key(*mc))
        free = w.vram_gib - sum(c.size for c in w.copies.values() if not c.draining)
        count = sum(not c.draining for c in w.copies.values())
        for model, copy in busy:
            if free >= size and not (w.max_loaded and count >= w.max_loaded):
                break
            copy.draining, copy.owed, free, count = True, len(w.waiting[model]), free + copy.size, count - 1


class Future:
    """The whole trace's future, for the offline baseline: when is each model next asked for."""

    def __init__(self, requests: list[Request]) -> None:
        self.uses: dict[str, list[float]] = defaultdict(list)
        for r in sorted(requests, key=lambda r: r.arrival):
            self.uses[r.model].append(r.arrival)

    def next_use(self, model: str, now: float) -> float:
        times = self.uses.get(model, ())
        i = bisect.bisect_right(times, now)
        return times[i] if i < len(times) else float("inf")


def pooled_belady(items: list[tuple[float, str, int]], capacity_gib: float, models: dict | None = None) -> int:
    """Loads of one fleet-wide cache of the whole fleet's VRAM that evicts the model needed furthest
    ahead: no placement, slot or timing limits. A reference for what fragmentation costs, not a proof."""
    models = models or MODELS
    uses = defaultdict(deque)
    for i, (_, model, _) in enumerate(items):
        uses[model].append(i)
    cache, loads = set(), 0
    for _, model, _ in items:
        uses[model].popleft()
        if model in cache:
            continue
        loads += 1
        while sum(models[m][0] for m in cache) + models[model][0] > capacity_gib:
            cache.remove(max(cache, key=lambda m: uses[m][0] if uses[m] else float("inf")))
        cache.add(model)
    return loads


def mean_service_s(models: dict[str, tuple[float, float]]) -> float:
    """A request's slot time averaged over models: rankings are shuffled, so each model is equally likely hot."""
    return sum(PREFILL_S + MEAN_TOKENS / rate for _, rate in models.values()) / len(models)


def trace(n: int, s: float, rate: float, seed: int, shift_s: float = 600.0, burst_every_s: float = 180.0,
          models: dict | None = None) -> list[tuple[float, str, int]]:
    """Poisson arrivals, Zipf(s) popularity over a ranking re-shuffled every shift_s, and every
    burst_every_s a burst of 20-50 requests within 5 s to one of the three least popular models."""
    rng = random.Random(seed)
    names = list(models or MODELS)
    ranking = names[:]
    rng.shuffle(ranking)
    weights = list(itertools.accumulate(1 / (k + 1) ** s for k in range(len(names))))
    out, t, next_shift, next_burst = [], 0.0, shift_s, burst_every_s
    while len(out) < n:
        t += rng.expovariate(rate)
        if t >= next_shift:
            rng.shuffle(ranking)
            next_shift += shift_s
        if t >= next_burst:
            cold = rng.choice(ranking[-3:])
            out += [(t + rng.uniform(0, 5), cold) for _ in range(rng.randint(20, 50))]
            next_burst += burst_every_s
        out.append((t, rng.choices(ranking, cum_weights=weights)[0]))
    out.sort()
    return [(t, m, max(16, int(rng.gauss(MEAN_TOKENS, 50)))) for t, m in out[:n]]


def with_contexts(items: list[tuple[float, str, int]], mix: dict[int | None, float], seed: int
                  ) -> list[tuple[float, str, int, int | None]]:
    """The trace with each request's num_ctx drawn from `mix` (value -> share; None: the client sends
    none): clients with different context settings sharing the models, interleaved."""
    rng = random.Random(seed + 7919)
    values, weights = list(mix), list(mix.values())
    return [(t, m, n, rng.choices(values, weights)[0]) for t, m, n in items]
