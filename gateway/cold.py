"""The cold tier of a plan: where a model would load on a healthy GPU worker that has no copy of it.
(b) where it fits without eviction, most headroom first; unknown VRAM, least busy first; (c) where
loading evicts the coldest idle unpinned models; then, for a request whose load-time options no
loaded copy has, a reload of a copy with other options (idle ones first, the coldest first; then
busy ones, which the worker reloads once their requests end); a spill where it can never fit whole.

Pure. The router's `Cold` looks only as far as a plan needs: it walks healthy GPU workers by the
free VRAM they were probed with (the snapshot's placement index) and stops after the k-th that
fits; evictions and spills need a look at every holder, for the plans that get that far.
`cold_placements` looks at every worker it is given (the warmer's few).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway import vram
from gateway.fleet_index import Placement
from gateway.plan import Candidate, Load, Reason
from gateway.residency import free_vram, is_loaded, victims, worker_full
from gateway.state import Snapshot, WorkerView


def healthy(w: WorkerView, placement: Placement, slow_now: frozenset[str]) -> bool:
    """Serving, on a GPU, at full GPU speed by its readings and by its answers."""
    return w.serving and w.tier == "gpu" and w.name not in placement.degraded and w.name not in slow_now


class Cold:
    """(b) fits without eviction, most headroom first; unknown VRAM; (c) evicts the coldest idle;
    reloads of the `reloadable` copies (loaded with other load-time options); spill. Healthy GPU
    holders without a loaded copy only (and the reloadable), never a worker at max_inflight."""

    def __init__(self, snap: Snapshot, load: Load, model: str, placement: Placement, slow_now: frozenset[str],
                 reloadable: tuple[str, ...] = ()) -> None:
        self.snap, self.load, self.model, self.workers = snap, load, model, snap.workers
        self.holders, self.placement, self.slow_now = snap.holders(model), placement, slow_now
        self.reloadable = reloadable
        self.need = vram.footprint(snap, model)
        self._fits: dict[int, list[Candidate]] = {}
        self._evict_spill: tuple[list[Candidate], list[Candidate]] | None = None
        self._classified: dict[str, tuple] = {}

    def eligible(self, name: str) -> bool:
        w, load = self.workers[name], self.load
        return (healthy(w, self.placement, self.slow_now) and not is_loaded(w, self.model, load)
                and not worker_full(w, load))

    def classify(self, name: str) -> tuple[Reason | None, tuple, tuple[str, ...]]:
        """_classify for an eligible holder, once per decision however many tiers ask."""
        found = self._classified.get(name)
        if found is None:
            found = self._classified[name] = _classify(self.snap, self.load, self.workers[name], self.need,
                                                       self.holders[name])
        return found

    def first(self, k: int) -> list[Candidate]:
        out = self.fits(k)
        if len(out) < k:
            out = out + self.unknown(k - len(out))
        if len(out) < k:
            evict, spill = self.evict_and_spill()
            out = out + (evict + self.reloads() + spill)[: k - len(out)]
        return out

    def reloads(self) -> list[Candidate]:
        """The copies loaded with other load-time options, as reloads: idle ones first, the least
        recently used first; then busy ones, fewest requests in flight first (the worker reloads
        them once those end, and meanwhile the other option set's clients lose that copy)."""
        load, model = self.load, self.model
        usable = [n for n in self.reloadable if not worker_full(self.workers[n], load)]
        ranked = sorted(usable, key=lambda n: (load.model_inflight(n, model) > 0, load.model_inflight(n, model),
                                               load.last_used(n, model), self.holders.get(n, 0)))
        return [Candidate(n, Reason.OPTIONS) for n in ranked]

    def spare(self) -> Candidate | None:
        """Where a replica goes: the first that fits, else the first that evicts (never a spill)."""
        fits = self.fits(1)
        if fits:
            return fits[0]
        evict, _ = self.evict_and_spill()
        return evict[0] if evict else None

    def fits(self, k: int) -> list[Candidate]:
        """The k with most headroom after the model loads. Walks healthy GPU workers by free VRAM as
        probed, which bounds what our traffic since left free (it only takes VRAM, except where our
        loads evicted something: those are looked at first), so the walk stops after the k-th."""
        if k in self._fits:
            return self._fits[k]
        need, holders = self.need, self.holders
        pool: list[tuple[tuple, str]] = []  # (classify's key, worker), best first
        if need is not None:
            seen = set()
            for name in self.load.evicted_since(self.placement.probe_floor):
                if name in holders and name not in seen:
                    seen.add(name)
                    self._try_fit(name, pool, k)
            for free, pos, name in self.placement.by_free:
                if free < need or (len(pool) >= k and (need - free, 0, pos) > pool[k - 1][0]):
                    break
                if name in holders and name not in seen:
                    self._try_fit(name, pool, k)
        self._fits[k] = found = [Candidate(name, Reason.FITS) for _, name in pool[:k]]
        return found

    def _try_fit(self, name: str, pool: list[tuple[tuple, str]], k: int) -> None:
        if self.eligible(name):
            kind, key, _ = self.classify(name)
            if kind is Reason.FITS:
                pool.append((key, name))
                pool.sort()
                del pool[k:]

    def unknown(self, k: int) -> list[Candidate]:
        """Least busy first. VRAM unknown (no vram_gib, no NVML), or the model's size unknown:
        then every cold placement is a guess, and all of them are here."""
        if self.need is None:
            names: Iterable[tuple[int, str]] = ((pos, n) for n, pos in self.holders.items())
        else:
            names = ((pos, n) for pos, n in self.placement.unknown_vram if n in self.holders)
        pool, idle = [], 0
        for pos, name in names:
            if self.eligible(name):
                busy = self.load.get(name)
                pool.append((busy, pos, name))
                idle += not busy
                if idle >= k:
                    break  # k idle ones in config order: nothing further on can rank before them
        return [Candidate(name, Reason.UNKNOWN_VRAM) for _, _, name in sorted(pool)[:k]]

    def evict_and_spill(self) -> tuple[list[Candidate], list[Candidate]]:
        """Every holder where the model does not fit: a full look, for plans that get this far."""
        if self._evict_spill is None:
            evict, spill = [], []
            if self.need is not None:
                for name in self.holders:
                    if self.eligible(name):
                        kind, key, victims = self.classify(name)
                        if kind is Reason.EVICT:
                            evict.append((key, Candidate(name, kind, victims)))
                        elif kind is Reason.SPILL:
                            spill.append((key, Candidate(name, kind)))
            self._evict_spill = ([c for _, c in sorted(evict, key=lambda t: t[0])],
                                 [c for _, c in sorted(spill, key=lambda t: t[0])])
        return self._evict_spill


def cold_placements(snap: Snapshot, load: Load, model: str, workers: list[WorkerView]) -> list[Candidate]:
    """(b) fits without eviction, most headroom first; unknown VRAM; (c) evicts the coldest idle; spill.
    Every one of `workers` is looked at (the warmer's pick among the few it may use)."""
    need = vram.footprint(snap, model)
    found: dict[Reason, list] = {Reason.FITS: [], Reason.UNKNOWN_VRAM: [], Reason.EVICT: [], Reason.SPILL: []}
    for pos, w in enumerate(workers):
        if not worker_full(w, load):
            kind, key, victims = _classify(snap, load, w, need, pos)
            if kind is not None:
                found[kind].append((key, Candidate(w.name, kind, victims)))
    return [c for kind in found for _, c in sorted(found[kind], key=lambda t: t[0])]


def _classify(snap: Snapshot, load: Load, w: WorkerView, need: int | None, pos: int
              ) -> tuple[Reason | None, tuple, tuple[str, ...]]:
    """Where a cold load of a model needing `need` bytes stands on `w`, with its sort key (ties:
    config position). None: only busy models stand in the way; loading now would make them
    drain: wait instead."""
    free = free_vram(snap, w, load)
    if free is None or need is None:
        return Reason.UNKNOWN_VRAM, (load.get(w.name), pos), ()
    if need <= free:
        return Reason.FITS, (need - free, load.get(w.name), pos), ()
    evicted = victims(snap, load, w, need - free)
    if evicted is not None:
        coldest = max((load.last_used(w.name, m) for m in evicted), default=0.0)
        return Reason.EVICT, (coldest, len(evicted), pos), tuple(evicted)
    total = vram.capacity(w)
    if total is not None and need > total:
        return Reason.SPILL, (load.get(w.name), pos), ()  # can never fit whole: a partial offload is the only way
    return None, (), ()
