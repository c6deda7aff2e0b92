"""The live traffic view a replica routes by when replicas share state: its own exact counts
(InFlight) plus what the other replicas published (cluster.ClusterView), read as one `Load`.

Counts add up; learned slots take the larger; times are the latest, the others' turned from
wall-clock seconds into this process's monotonic clock. A claim's peers and a stream's first
byte count every replica's requests and streams on the pair, so slots are learned from what the
worker served at once, not from our share. Decode rates and slow verdicts stay each replica's
own measurement. Explicit unloads are fleet-wide: a model one replica's client unloaded is left
alone by every replica's warmer until a request on that replica asks for it again, and each
replica adopts the others' unloads as its own (and publishes them), so an unload outlives the
replica that took it (a rolling restart, a crash). Reads without I/O (adopting an unload is the
one write): the cluster's background sync swaps the view they read. A lone process routes by
InFlight itself and never builds one of these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from gateway import state
from gateway.cluster import Cluster, ClusterView, LocalState
from gateway.inflight import Claim, InFlight
from gateway.state import SnapshotHolder


class _Sum(Mapping[str, int]):
    """Two worker -> count maps read as their sum, without building a third."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: Mapping[str, int], b: Mapping[str, int]) -> None:
        self._a, self._b = a, b

    def __getitem__(self, key: str) -> int:
        total = self._a.get(key, 0) + self._b.get(key, 0)
        if not total and key not in self._a and key not in self._b:
            raise KeyError(key)
        return total

    def get(self, key, default=0):  # the router's hot call: no exception on a miss
        return self._a.get(key, 0) + self._b.get(key, 0) if (key in self._a or key in self._b) else default

    def __iter__(self) -> Iterator[str]:
        yield from self._a
        yield from (k for k in self._b if k not in self._a)

    def __len__(self) -> int:
        return len(self._a) + sum(1 for k in self._b if k not in self._a)


class SharedLoad:
    """InFlight's reads with the other replicas' traffic added (the router's `Load` protocol)."""

    def __init__(self, local: InFlight, cluster: Cluster, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.local, self.cluster, self._clock, self._wall = local, cluster, clock, wall
        # one replica's own facts and writes: as they are
        self.decode_rate, self.worker_rate, self.recent_rate = local.decode_rate, local.worker_rate, local.recent_rate
        self.slow_reason, self.slow_rate, self.slow_workers = local.slow_reason, local.slow_rate, local.slow_workers
        self.session_worker, self.remember_session = local.session_worker, local.remember_session
        self.requested, self.demand, self.finished = local.requested, local.demand, local.finished
        self.record_rate, self.learn_slots, self.evicting = local.record_rate, local.learn_slots, local.evicting
        self.unloaded = local.unloaded
        self.copy_options, self.sent_options = local.copy_options, local.sent_options  # ours: not shared

    def _mono(self, wall_time: float) -> float:
        return wall_time - self._wall() + self._clock()

    @contextmanager
    def claim(self, worker: str, model: str = "", now: float = 0.0) -> Iterator[Claim]:
        """InFlight.claim, counting the other replicas' requests on the pair (as of the last sync)
        among its peers and their streams in its first byte: the worker serves them all at once,
        and learn_slots, record_rate and first_byte read these counts as that. Counting our share
        alone, N replicas each learn about 1/N of a worker's slots and route as if it were full
        (queueing, and loading replicas of a model nobody needs)."""
        claims = self.local.claims
        with claims.claim(worker, model, now) as pair:
            claim = Claim(self, worker, model, pair.inflight + self.cluster.view.claims.get((worker, model), 0))
            try:
                yield claim
            finally:
                if claim.started:
                    claims.stopped(pair)

    def first_byte(self, worker: str, model: str) -> None:
        """A stream started: as many streams generating at once, ours and the others', as the worker has slots."""
        here = self.local.claims.started(worker, model)
        self.local.learn_slots(worker, model, here + self.cluster.view.started.get((worker, model), 0))

    # -- counts ------------------------------------------------------------------------------
    def get(self, worker: str) -> int:
        return self.local.get(worker) + self.cluster.view.workers.get(worker, 0)

    def view(self) -> Mapping[str, int]:
        return _Sum(self.local.view(), self.cluster.view.workers)

    def busy_on(self, model: str) -> Mapping[str, int]:
        remote = self.cluster.view.busy.get(model)
        return _Sum(self.local.busy_on(model), remote) if remote else self.local.busy_on(model)

    def model_inflight(self, worker: str, model: str) -> int:
        return self.local.model_inflight(worker, model) + self.cluster.view.claims.get((worker, model), 0)

    def slots(self, worker: str, model: str) -> int:
        return max(self.local.slots(worker, model), self.cluster.view.slots.get((worker, model), 1))

    # -- what traffic did since the last probe -------------------------------------------------
    def last_used(self, worker: str, model: str) -> float:
        remote = self.cluster.view.by_worker.get(worker, {}).get(model)
        local = self.local.last_used(worker, model)
        return local if remote is None else max(local, self._mono(remote))

    def evicted_at(self, worker: str, model: str) -> float:
        remote = self.cluster.view.evicted.get((worker, model))
        local = self.local.evicted_at(worker, model)
        return local if remote is None else max(local, self._mono(remote))

    def evicted_on(self, model: str) -> Mapping[str, float]:
        local = self.local.evicted_on(model)
        remote = {w: self._mono(t) for w, t in self.cluster.view.evicted_by_model.get(model, {}).items()}
        if not remote:
            return local
        return {**remote, **{w: max(t, remote.get(w, t)) for w, t in local.items()}}

    def active_models(self, worker: str, since: float) -> list[str]:
        models = self.local.active_models(worker, since)
        view = self.cluster.view
        remote = [m for m, t in view.by_worker.get(worker, {}).items()
                  if m not in models and (view.claims.get((worker, m)) or self._mono(t) > since)]
        return models + remote if remote else models

    def used_since(self, model: str, since: float) -> Iterable[str]:
        seen = set()
        for worker in self.local.used_since(model, since):
            seen.add(worker)
            yield worker
        view = self.cluster.view
        busy = view.busy.get(model, {})
        for worker, t in view.used.get(model, {}).items():
            if worker not in seen and (busy.get(worker) or self._mono(t) > since):
                yield worker

    def evicted_since(self, since: float) -> Iterable[str]:
        seen = set()
        for worker in self.local.evicted_since(since):
            seen.add(worker)
            yield worker
        for worker, t in self.cluster.view.evictions.items():
            if worker not in seen and self._mono(t) > since:
                yield worker

    def held_unloaded(self) -> Mapping[str, float]:
        """InFlight.held_unloaded, after adopting the unloads the other replicas published (once per
        warmer step: a model's unload anywhere holds here until a request here asks for it)."""
        for model, at in self.cluster.view.unloaded.items():
            self.local.demanded.adopt(model, self._mono(at))
        return self.local.held_unloaded()

    # -- learned times -------------------------------------------------------------------------
    def service_s(self, model: str) -> float | None:
        local = self.local.service_s(model)
        return local if local is not None else self.cluster.view.service_s.get(model)

    def load_s(self, model: str) -> float | None:
        local = self.local.load_s(model)
        return local if local is not None else self.cluster.view.load_s.get(model)


def local_state(inflight: InFlight, depths: Mapping[str, int], window_s: float, holder: SnapshotHolder,
                clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> LocalState:
    """This replica's contribution for the others: exact counts, and what its traffic did in the
    last `window_s` (a probe interval or two: older facts every replica's own probes have seen),
    with times as wall-clock seconds, the one clock replicas share."""
    now = clock()
    offset = wall() - now
    claims, used, evicted = inflight.claims.export(now - window_s)
    service, load = inflight.durations.learned()
    return LocalState(
        claims=claims, started=inflight.claims.generating(), used={k: t + offset for k, t in used.items()},
        evicted={k: t + offset for k, t in evicted.items()}, depths=depths,
        slots={k: n for k, n in inflight.slots_learned.learned().items() if n > 1},
        service_s=service, load_s=load, unloaded={m: t + offset for m, t in inflight.held_unloaded().items()},
        ejections={w.name: w.ejected_until + offset for w in holder.current.workers.values()
                   if w.ejected_until > now},
        drained=frozenset(w.name for w in holder.current.workers.values() if w.drained))


def shared_facts(holder: SnapshotHolder, view: ClusterView, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
    """After a sync: the other replicas' ejections and the fleet-wide drains, into our snapshot."""
    now = clock()
    offset = now - wall()
    ejected = {name: until + offset for name, until in view.ejections.items()}
    holder.update(lambda s: state.with_shared(s, ejected, view.drained, now))
