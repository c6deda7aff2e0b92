"""The simulated worker's state machine, as Ollama's scheduler behaves: residency in a VRAM budget
(or, on a CPU worker, only a count), loads one at a time, eviction of idle models whose keep-alive
ends soonest, per-model parallel slots with a FIFO wait, a bounded queue, keep-alive expiry, and a
reload when the next request in line asks other runner options (num_ctx...) than the copy's.

No HTTP here (the aiohttp handlers drive it) and no gateway imports. Time is the event loop's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

from local_workers.sim.models import GIB, SimModel, default_registry, normalise
from local_workers.sim.records import MODES, SLOWDOWN, Busy, ModelGone, Resident, Runner, Stats

__all__ = ["MODES", "Busy", "ModelGone", "Resident", "Runner", "SimWorker", "Stats"]


class SimWorker:
    """One simulated Ollama server's state. Handlers call acquire()/release() around each answer;
    tests read `loaded`, `stats`, `active`, `queued` and switch `mode` with set_mode()."""

    def __init__(self, name: str = "sim", models: list[SimModel] | None = None, vram_bytes: int = 24 * GIB,
                 tier: str = "gpu", tokens_per_s: float = 400.0, load_s_per_gib: float = 0.4, num_parallel: int = 4,
                 max_queue: int = 512, max_loaded_models: int = 3, version: str = "0.12.6",
                 default_keep_alive_s: float = 300.0, pull_s_per_gib: float = 0.05,
                 registry: dict[str, SimModel] | None = None) -> None:
        if tier not in ("gpu", "cpu"):
            raise ValueError(f"tier must be 'gpu' or 'cpu', not {tier!r}")
        self.name, self.tier, self.version = name, tier, version
        self.vram_bytes = vram_bytes if tier == "gpu" else 0
        self.tokens_per_s, self.load_s_per_gib, self.pull_s_per_gib = tokens_per_s, load_s_per_gib, pull_s_per_gib
        self.num_parallel, self.max_queue = max(1, num_parallel), max_queue
        self.max_loaded_models, self.default_keep_alive_s = max_loaded_models, default_keep_alive_s
        self.disk: dict[str, SimModel] = {}
        self.modified: dict[str, float] = {}  # wall-clock time each model landed on disk
        for model in models or []:
            self.put_on_disk(model)
        pullable = default_registry().values() if registry is None else registry.values()
        self.registry: dict[str, SimModel] = {**{m.name: m for m in pullable}, **self.disk}
        self.blobs: dict[str, int] = {}
        self.loaded: dict[str, Resident] = {}
        self.stats = Stats()
        self.mode = "ok"
        self.unhung = asyncio.Event()
        self.unhung.set()
        self.active = 0
        self.queued = 0
        self._waiting: dict[str, deque[asyncio.Future]] = {}
        self._wants: dict[asyncio.Future, Runner] = {}  # the runner options each waiting request asks
        self._load_queue: deque[SimModel] = deque()
        self._loader: asyncio.Task | None = None
        self._room = asyncio.Event()  # a model went idle or was unloaded: a waiting load looks again
        self._expiry = asyncio.Event()  # an expiry moved earlier: the reaper recomputes its deadline
        self._reap_at = math.inf

    # -- modes and disk ------------------------------------------------------------------------------
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

    def put_on_disk(self, model: SimModel) -> None:
        self.disk[model.name] = model
        self.modified[model.name] = time.time()

    def remove_from_disk(self, model: SimModel) -> None:
        del self.disk[model.name]
        self.modified.pop(model.name, None)
        res = self.loaded.get(model.name)
        if res is not None:
            res.draining = True
            if res.idle:
                self._unload(res)

    # -- decode speed --------------------------------------------------------------------------------
    def rate(self, res: Resident) -> float:
        """Tokens per second for one stream on this copy right now."""
        rate = self.tokens_per_s
        if self.mode in ("slow", "gpu_lost"):
            rate /= SLOWDOWN
        elif self.tier == "gpu" and res.size_vram < res.model.size_bytes:
            rate /= 1 + (SLOWDOWN - 1) * (1 - res.size_vram / max(1, res.model.size_bytes))
        return rate

    def reported_vram(self, res: Resident) -> int:
        return 0 if self.mode == "gpu_lost" else res.size_vram

    # -- slots ---------------------------------------------------------------------------------------
    def default_num_ctx(self, model: SimModel) -> int:
        """Ollama's automatic context for this worker's VRAM (4096 below 23 GiB, 32768 below 47 GiB,
        else 262144), at most the model's training context."""
        gib = self.vram_bytes / 1024**3
        return min(262144 if gib >= 47 else 32768 if gib >= 23 else 4096, model.context_length)

    async def acquire(self, model: SimModel, keep_alive_s: float, runner: Runner | None = None) -> Resident:
        """A slot on a loaded copy of `model` with these runner options (the worker's defaults when
        None), loading it first if needed (FIFO behind earlier requests), reloading a copy with others."""
        runner = runner or Runner(self.default_num_ctx(model))
        res = self.loaded.get(model.name)
        if res is not None and res.ready_at is not None and not res.draining \
                and res.active < self.num_parallel and model.name not in self._waiting and res.runner.serves(runner):
            self._occupy(res, keep_alive_s)
            return res
        if self.queued >= self.max_queue:
            raise Busy()
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(model.name, deque()).append(fut)
        self._wants[fut] = runner
        self.queued += 1
        if res is None:
            self._want_load(model)
        elif not res.runner.serves(runner):
            self._grant(res)  # an idle copy with other options reloads at once, when this request is first in line
        try:
            res = await fut
        except asyncio.CancelledError:
            self._abandon(model.name, fut)
            raise
        res.keep_alive_s = keep_alive_s
        res.expires_at = time.monotonic() + keep_alive_s
        return res

    def _occupy(self, res: Resident, keep_alive_s: float) -> None:
        res.active += 1
        self.active += 1
        res.keep_alive_s = keep_alive_s  # as Ollama: the latest request sets the session duration
        res.expires_at = time.monotonic() + keep_alive_s

    def _abandon(self, name: str, fut: asyncio.Future) -> None:
        """The client left while waiting. Whoever settles a waiter takes it off `queued`."""
        self._wants.pop(fut, None)
        if fut.done() and not fut.cancelled():
            if fut.exception() is None:
                self.release(fut.result())  # granted in the same instant the client left
            return
        fut.cancel()
        self.queued -= 1
        queue = self._waiting.get(name)
        if queue is not None and fut in queue:
            queue.remove(fut)
            if not queue:
                del self._waiting[name]

    def _grant(self, res: Resident) -> None:
        """Hand free slots to the requests waiting for this model, oldest first."""
        queue = self._waiting.get(res.model.name)
        while queue and res.ready_at is not None and not res.draining and res.active < self.num_parallel:
            if not queue[0].done() and not res.runner.serves(self._wants.get(queue[0], res.runner)):
                self._reload(res)  # as Ollama's scheduler: the next in line needs other runner options
                return
            fut = queue.popleft()
            self._wants.pop(fut, None)
            if not fut.done():
                self.queued -= 1
                res.active += 1
                self.active += 1
                fut.set_result(res)
        if queue is not None and not queue:
            del self._waiting[res.model.name]

    def release(self, res: Resident) -> None:
        res.active -= 1
        self.active -= 1
        self._grant(res)
        if res.active:
            return
        if res.draining or res.keep_alive_s <= 0:
            self._unload(res, evicted=res.draining and not res.reloading and res.model.name in self.disk)
            return
        res.expires_at = time.monotonic() + res.keep_alive_s
        if res.expires_at < self._reap_at:
            self._expiry.set()
        self._room.set()

    # -- loading and eviction ------------------------------------------------------------------------
    def _want_load(self, model: SimModel) -> None:
        if model not in self._load_queue:
            self._load_queue.append(model)
        if self._loader is None:
            self._loader = asyncio.get_running_loop().create_task(self._run_loads())

    async def _run_loads(self) -> None:
        """Loads happen one at a time, in the order they were first asked for, as in Ollama."""
        try:
            while self._load_queue:
                model = self._load_queue[0]
                if model.name in self._waiting and model.name not in self.loaded:
                    await self._load(model)
                self._load_queue.popleft()
        finally:
            self._loader = None

    async def _load(self, model: SimModel) -> None:
        while not self._make_room(model):
            self._room.clear()
            await self._room.wait()
        used = sum(r.size_vram for r in self.loaded.values())
        size_vram = 0 if self.tier == "cpu" else min(model.size_bytes, self.vram_bytes - used)
        waiting = [f for f in self._waiting.get(model.name, ()) if not f.done()]
        runner = self._wants.get(waiting[0]) if waiting else None  # loaded for the first in line
        res = Resident(model, size_vram, self.default_keep_alive_s,
                       expires_at=time.monotonic() + self.default_keep_alive_s,
                       runner=runner or Runner(self.default_num_ctx(model)))
        self.loaded[model.name] = res  # listed in /api/ps while loading, as Ollama lists a starting runner
        await asyncio.sleep(model.size_gib * self.load_s_per_gib)
        res.ready_at = time.monotonic()
        self.stats.loads.append(model.name)
        self._grant(res)
        if res.idle:  # everyone who wanted it left during the load
            res.expires_at = res.ready_at + res.keep_alive_s
            self._expiry.set()

    def _fits(self, model: SimModel) -> bool:
        if 0 < self.max_loaded_models <= len(self.loaded):
            return False
        if self.tier == "cpu":
            return True
        used = sum(r.size_vram for r in self.loaded.values())
        return self.vram_bytes - used >= min(model.size_bytes, self.vram_bytes)

    def _make_room(self, model: SimModel) -> bool:
        """Unload idle models, the one whose keep-alive ends soonest first, until `model` fits.
        When only busy models stand in the way, mark enough of them to unload when their last
        request ends (they take no new requests meanwhile) and say False: the load waits."""
        while not self._fits(model):
            idle = [r for r in self.loaded.values() if r.idle]
            if not idle:
                self._drain_for(model)
                return False
            self._unload(min(idle, key=lambda r: r.expires_at), evicted=True)
        return True

    def _drain_for(self, model: SimModel) -> None:
        busy = sorted((r for r in self.loaded.values() if r.ready_at is not None), key=lambda r: r.expires_at)
        count = len(self.loaded)
        free = self.vram_bytes - sum(r.size_vram for r in self.loaded.values() if not r.draining)
        need = 0 if self.tier == "cpu" else min(model.size_bytes, self.vram_bytes)
        count -= sum(r.draining for r in busy)
        for res in busy:
            if free >= need and not 0 < self.max_loaded_models <= count:
                break
            if not res.draining:
                res.draining = True
                free += res.size_vram
                count -= 1

    def _reload(self, res: Resident) -> None:
        """Take no new requests on this copy; once its last request ends, unload it and load the
        model again for the requests waiting (Ollama's needsReload)."""
        res.draining = res.reloading = True
        if res.idle:
            self._unload(res)

    def _unload(self, res: Resident, evicted: bool = False) -> None:
        name = res.model.name
        if self.loaded.get(name) is not res:
            return
        del self.loaded[name]
        self.stats.unloads.append(name)
        if evicted:
            self.stats.evictions.append(name)
        self._room.set()
        if name in self._waiting:  # requests queued behind a drained copy need it back, or an answer
            if name in self.disk:
                self._want_load(res.model)
            else:
                for fut in self._waiting.pop(name):
                    self._wants.pop(fut, None)
                    if not fut.done():
                        self.queued -= 1
                        fut.set_exception(ModelGone(name))

    def unload_now(self, name: str) -> bool:
        """Unload an idle model at once (as if its keep-alive ran out); False if busy or absent."""
        res = self.loaded.get(normalise(name))
        if res is None or not res.idle:
            return False
        self._unload(res)
        return True

    def expire_after_use(self, name: str) -> None:
        """keep_alive 0 with an empty prompt: unload now if idle, else when its last request ends."""
        res = self.loaded.get(normalise(name))
        if res is not None:
            res.keep_alive_s = 0.0
            if res.idle:
                self._unload(res)

    # -- keep-alive expiry ---------------------------------------------------------------------------
    def expire(self) -> float:
        """Unload idle models whose keep-alive ran out; the monotonic time of the next expiry."""
        now, soonest = time.monotonic(), math.inf
        for res in list(self.loaded.values()):
            if res.idle:
                if res.expires_at <= now:
                    self._unload(res)
                else:
                    soonest = min(soonest, res.expires_at)
        return soonest

    async def reap_forever(self) -> None:
        while True:
            self._expiry.clear()
            self._reap_at = self.expire()
            delay = self._reap_at - time.monotonic()
            try:
                await asyncio.wait_for(self._expiry.wait(), None if delay == math.inf else max(0.0, delay))
            except TimeoutError:
                pass

    async def close(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
