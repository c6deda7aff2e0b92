"""Frozen cluster state (Snapshot, WorkerView), its pure updaters, and SnapshotHolder.

The control loop owns the Snapshot; the request path reads `holder.current` once per
request. Updaters are plain synchronous `Snapshot -> Snapshot` functions, so the event
loop serialises them and no lock is needed; a probe round lands in one swap (`with_probes`).
The indexes routing reads (fleet_index.py) are built once per snapshot, on first use.
Nothing here does I/O or keeps in-flight counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from backends.base import ModelEntry, ModelShape, Probe, ResidentModel
from gateway.config import RoutingConfig, WorkerConfig
from gateway.fleet_index import Listing, Placement, build_listing, build_placement, same_listing
from gateway.names import InvalidModelName, Names, canonical

if TYPE_CHECKING:  # gpu.py's GpuWatch lands readings through this module: their types only, no import cycle
    from gateway.gpu import GpuReading, GpuStatus

_EMPTY: Mapping = MappingProxyType({})
_FOOTPRINTS_KEPT = 4096  # footprints of models no worker lists any more are forgotten past this many
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkerView:
    config: WorkerConfig
    up: bool = False
    ever_up: bool = False
    successes: int = 0
    failures: int = 0
    models: Mapping[str, ModelEntry] = field(default_factory=lambda: _EMPTY)
    resident: Mapping[str, ResidentModel] = field(default_factory=lambda: _EMPTY)
    version: str | None = None
    probed_at: float | None = None
    last_error: str | None = None
    down_since: float | None = None
    gpu: GpuReading | None = None
    slots_total: int | None = None
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0
    drained: bool = False  # an operator drained it: no new requests, in-flight ones finish
    warming: bool = False  # added by a reload: takes traffic once the warmer has run for it
    # The probe's own listing `models` was indexed from: the same listing again is not indexed again.
    listed: tuple = field(default=(), repr=False, compare=False)
    # Copies of config.name and config.tier: the router reads them per candidate, many times a request.
    name: str = field(init=False, repr=False, compare=False)
    tier: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.config.name)
        object.__setattr__(self, "tier", self.config.tier)

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def serving(self) -> bool:
        """Passes health checks, is not ejected for failing real traffic, not drained by an
        operator and not still warming after a reload added it."""
        return self.up and not self.ejected_until and not self.drained and not self.warming

    @property
    def routable(self) -> bool:
        """May take traffic at all, even in panic: an operator's drain is never overridden."""
        return not self.drained

    @property
    def degraded(self) -> str | None:
        """Why a GPU worker is not at full GPU speed, from its own readings; None when it is."""
        if self.tier != "gpu":
            return None
        if self.gpu is not None and not self.gpu.ok:
            return f"GPU {self.gpu.index} cannot be read: {self.gpu.error}"
        for model, r in self.resident.items():
            if r.size and r.size_vram < r.size:
                return f"{model} is {100 * r.size_vram / r.size:.0f}% on the GPU (spilled to CPU)"
        return None

    @property
    def state(self) -> str:
        if self.drained:
            return "draining"
        if self.warming and self.up:
            return "warming"
        if self.ejected_until and self.up:
            return "ejected"
        if self.up:
            return "degraded" if self.degraded else "healthy"
        return "down" if self.ever_up or self.probed_at is not None else "unknown"

    def live_state(self, inflight: int, slow: str | None) -> str:
        """The state on-call sees: `state`, with a drain's end and the request path's slow verdict."""
        if self.drained and not inflight:
            return "drained"
        if self.state == "healthy" and slow:
            return "degraded"
        return self.state

    def upstream_id(self, model: str) -> str:
        """The id this worker knows the model by (llama.cpp aliases, OpenAI ids); its own name otherwise."""
        entry = self.models.get(model) or self.resident.get(model)
        return (entry.upstream_id or entry.name) if entry else model

    def has(self, model: str) -> bool:
        return model in self.models or model in self.resident


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    config: RoutingConfig
    names: Names
    workers: Mapping[str, WorkerView]
    config_loaded_at: float
    updated_at: float
    footprints: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    shapes: Mapping[str, ModelShape] = field(default_factory=lambda: _EMPTY)
    gpu_status: str = "not read yet"
    # Indexes derived from the fields above, built on first use; never passed on by dataclasses.replace.
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def worker(self, name: str) -> WorkerView | None:
        return self.workers.get(name)

    @property
    def listing(self) -> Listing:
        """Who holds which model (fleet_index.Listing); carried to the next snapshot when it holds."""
        return self.derived("listing", lambda snap: build_listing(snap.workers))

    @property
    def placement(self) -> Placement:
        """The VRAM picture and worker states the router walks (fleet_index.Placement)."""
        return self.derived("placement", build_placement)

    def derived(self, key: str, build: Callable[[Snapshot], T]) -> T:
        """A value computed from this snapshot alone (a merged listing, say), built once: every request
        until the next swap reads the same one, so readers must not change it."""
        if key not in self._memo:
            self._memo[key] = build(self)
        return self._memo[key]

    def holders(self, model: str) -> Mapping[str, int]:
        """The workers that hold `model` (on disk or resident) -> their position in the config."""
        return self.listing.holders.get(model, _EMPTY)

    def up_workers(self) -> list[WorkerView]:
        return [w for w in self.workers.values() if w.up]

    def serving_workers(self) -> list[WorkerView]:
        return [w for w in self.workers.values() if w.serving]


def initial(config: RoutingConfig, *, wall_now: float, now: float) -> Snapshot:
    workers = {w.name: WorkerView(config=w) for w in config.workers}
    return Snapshot(version=1, config=config, names=Names(config.aliases()), workers=MappingProxyType(workers),
                    config_loaded_at=wall_now, updated_at=now)


def with_config(snap: Snapshot, config: RoutingConfig, *, wall_now: float, now: float) -> Snapshot:
    """A whole new routing world. A worker keeps what we learned of it only if it is the same worker."""
    workers = {}
    for wc in config.workers:
        old = snap.workers.get(wc.name)
        if old is not None and same_worker(old.config, wc):
            workers[wc.name] = dataclasses.replace(old, config=wc)
        else:  # a new or re-pointed worker warms before traffic; an operator's drain survives the reload
            workers[wc.name] = WorkerView(config=wc, warming=True, drained=old is not None and old.drained)
    return dataclasses.replace(snap, version=snap.version + 1, config=config, names=Names(config.aliases()),
                               workers=MappingProxyType(workers), config_loaded_at=wall_now, updated_at=now)


def same_worker(old: WorkerConfig, new: WorkerConfig) -> bool:
    """Two configs of one name are the same worker when they reach the same server the same way: same
    URL, same kind. The rest (tier, VRAM, limits, models, keys) can change without forgetting what was learned."""
    return (old.url, old.kind) == (new.url, new.kind)


def with_drain(snap: Snapshot, name: str, drained: bool, now: float) -> Snapshot:
    old = snap.workers.get(name)
    if old is None or old.drained == drained:
        return snap
    return _replace_worker(snap, dataclasses.replace(old, drained=drained), now)


def with_shared(snap: Snapshot, ejected: Mapping[str, float], drained: frozenset[str], now: float) -> Snapshot:
    """What the other replicas decided, in one swap: ejections (worker -> ejected until, on this
    process's clock) that outlast ours, and the fleet-wide set of drained workers."""
    changed: dict[str, WorkerView] = {}
    for name, w in snap.workers.items():
        until = ejected.get(name, 0.0)
        eject = until > now and until > w.ejected_until + 0.5  # ours, or one that ends sooner, gives way
        drain = name in drained
        if eject:
            changed[name] = dataclasses.replace(w, drained=drain, ejected_until=until,
                                                last_error=f"ejected by another gateway replica for {until - now:.0f}s")
        elif drain != w.drained:
            changed[name] = dataclasses.replace(w, drained=drain)
    return _replace_workers(snap, changed, now)


def with_warmed(snap: Snapshot, names: set[str], now: float) -> Snapshot:
    """The warmer has run for these workers since they came up: they take traffic now."""
    warmed = {name: dataclasses.replace(old, warming=False) for name in names
              if (old := snap.workers.get(name)) is not None and old.warming and old.up}
    return _replace_workers(snap, warmed, now)


def with_probe(snap: Snapshot, name: str, probe: Probe, now: float) -> Snapshot:
    return with_probes(snap, {name: probe}, now)


def with_probes(snap: Snapshot, probes: Mapping[str, Probe], now: float) -> Snapshot:
    """Probe results in one swap, applied in order. A model's footprint is what it took when it
    was last seen loaded. A worker removed by a reload while its probe was in flight is skipped."""
    changed = {name: _apply_probe(old, probe, snap.config, now) for name, probe in probes.items()
               if (old := snap.workers.get(name)) is not None}
    if not changed:
        return snap
    new = _replace_workers(snap, changed, now)
    footprints, learned = dict(snap.footprints), False
    for worker in changed.values():
        for model, r in worker.resident.items():
            if r.size and footprints.get(model) != r.size:
                footprints[model], learned = r.size, True
    if not learned:
        return new
    if len(footprints) > _FOOTPRINTS_KEPT:  # workers name models at will: keep those some worker still lists
        footprints = {m: size for m, size in footprints.items() if m in new.listing.holders}
    return _carry_listing(new, dataclasses.replace(new, footprints=MappingProxyType(footprints)))


def with_gpu(snap: Snapshot, status: GpuStatus) -> Snapshot:
    """NVML readings land on the workers configured with that gpu_index."""
    workers = {}
    for name, w in snap.workers.items():
        index = w.config.gpu_index
        reading = status.readings.get(index) if status.available and index is not None else None
        workers[name] = w if reading == w.gpu else dataclasses.replace(w, gpu=reading)
    text = "ok" if status.available else status.reason
    new = dataclasses.replace(snap, version=snap.version + 1, workers=MappingProxyType(workers), gpu_status=text)
    return _carry_listing(snap, new)


def with_shapes(snap: Snapshot, shapes: Mapping[str, ModelShape]) -> Snapshot:
    """KV-cache shapes learned from /api/show, in one swap."""
    if not shapes:
        return snap
    new = dataclasses.replace(snap, version=snap.version + 1, shapes=MappingProxyType({**snap.shapes, **shapes}))
    return _carry_listing(snap, new)


def with_failure(snap: Snapshot, name: str, error: str, now: float) -> Snapshot:
    """Passive health: real traffic could not even connect, so the worker is down now.

    Only a connect failure counts: it is definitive, where a slow or failed answer is not.
    The worker comes back through the usual rise of good probes.
    """
    old = snap.workers.get(name)
    if old is None or not old.up:
        return snap
    new = dataclasses.replace(old, up=False, successes=0, failures=snap.config.health.unhealthy_threshold,
                              last_error=error, down_since=now)
    return _replace_worker(snap, new, now)


def with_outcome(snap: Snapshot, name: str, ok: bool, now: float) -> Snapshot:
    """Passive health (outlier detection): consecutive failures in real traffic eject a worker
    for eject_s, doubling on each repeat up to max_eject_s, never more than max_ejected_share
    of the fleet at once. A success resets the count. Unchanged state returns the same snapshot."""
    old = snap.workers.get(name)
    if old is None or (ok and old.consecutive_failures == 0):
        return snap
    if ok:
        return _replace_worker(snap, dataclasses.replace(old, consecutive_failures=0), now)
    outlier = snap.config.outlier
    failures = old.consecutive_failures + 1
    if failures < outlier.consecutive_failures or old.ejected_until:
        return _replace_worker(snap, dataclasses.replace(old, consecutive_failures=failures), now)
    ejected = sum(1 for w in snap.workers.values() if w.ejected_until)
    if (ejected + 1) > outlier.max_ejected_share * len(snap.workers):
        return _replace_worker(snap, dataclasses.replace(old, consecutive_failures=failures), now)
    eject_s = min(outlier.max_eject_s, outlier.eject_s * 2 ** old.ejections)
    new = dataclasses.replace(old, consecutive_failures=0, ejected_until=now + eject_s, ejections=old.ejections + 1,
                              last_error=f"ejected for {eject_s:g}s after {failures} failed requests in a row")
    return _replace_worker(snap, new, now)


def with_ejections_expired(snap: Snapshot, now: float) -> Snapshot:
    expired = {w.name: dataclasses.replace(w, ejected_until=0.0) for w in snap.workers.values()
               if w.ejected_until and w.ejected_until <= now}
    return _replace_workers(snap, expired, now)


def _apply_probe(old: WorkerView, probe: Probe, config: RoutingConfig, now: float) -> WorkerView:
    health = config.health
    if not probe.ok:
        failures = old.failures + 1
        up = old.up and failures < health.unhealthy_threshold
        return dataclasses.replace(old, up=up, successes=0, failures=failures, probed_at=now, last_error=probe.error,
                                   down_since=None if up else (old.down_since or now))
    successes = old.successes + 1
    # A worker's first good probe lets it serve at once; a worker that fell must rise again.
    up = old.up or not old.ever_up or successes >= health.healthy_threshold
    return dataclasses.replace(
        old, up=up, ever_up=old.ever_up or up, successes=successes, failures=0, probed_at=now, last_error=None,
        down_since=None if up else old.down_since, version=probe.version or old.version, slots_total=probe.slots_total,
        models=old.models if probe.models and probe.models is old.listed else _index(probe.models),
        listed=probe.models, resident=_index(probe.resident),
    )


def _index(items: tuple) -> Mapping:
    out = {}
    for item in items:
        try:
            out[canonical(item.name)] = item
        except InvalidModelName:
            continue  # a worker listing a nameless model must not break the probe
    return MappingProxyType(out)


def _replace_worker(snap: Snapshot, worker: WorkerView, now: float) -> Snapshot:
    return _replace_workers(snap, {worker.name: worker}, now)


def _replace_workers(snap: Snapshot, changed: Mapping[str, WorkerView], now: float) -> Snapshot:
    """One new snapshot with these workers replaced (the same snapshot when there are none)."""
    if not changed:
        return snap
    workers = dict(snap.workers)
    workers.update(changed)
    new = dataclasses.replace(snap, version=snap.version + 1, workers=MappingProxyType(workers), updated_at=now)
    return _carry_listing(snap, new, changed)


def _carry_listing(old: Snapshot, new: Snapshot, changed: Mapping[str, WorkerView] | None = None) -> Snapshot:
    """The old snapshot's listing goes on when no changed worker lists anything new: most swaps
    (health, drains, ejections, a probe round where nothing loaded) rebuild nothing."""
    listing = old._memo.get("listing")
    if listing is not None and all(same_listing(old.workers[n], w) for n, w in (changed or {}).items()):
        new._memo["listing"] = listing
    return new


class SnapshotHolder:
    """The one mutable reference to cluster state; wakes waiters on every change."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self._changed = asyncio.Event()

    def update(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        new = change(self.current)
        if new is not self.current:
            self.current = new
            self._changed.set()
            self._changed = asyncio.Event()
        return new

    async def changed(self) -> Snapshot:
        """Wait for the next change and return the snapshot it produced."""
        await self._changed.wait()
        return self.current
