"""Claims and counts: requests in flight per worker and per (worker, model), when each pair was
last sent a request, and the models our own loads evicted. What our traffic did since the
last probe, indexed by worker and by model so that no read scans every pair.

`claim()` is the guard that makes every increment end in a decrement. Only the request path
writes here; nothing here learns rates or slots (learned.py) or decides anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

_NEVER = float("-inf")
_NONE: Mapping = MappingProxyType({})


@dataclass(slots=True)
class _Pair:
    inflight: int = 0
    generating: int = 0
    last_used: float = 0.0


class Claims:
    """Per worker and per (worker, model): requests in flight, streams generating, last use.

    Time-ordered indexes (most recently used last) let `used_since` and `evicted_since` stop at
    the first entry older than asked, as long as the times given only grow (a monotonic clock);
    once a time goes backwards they read every entry, which is slower and as exact."""

    def __init__(self) -> None:
        self._workers: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._by_worker: dict[str, dict[str, _Pair]] = {}  # worker -> model -> pair
        self._recent: dict[str, dict[str, _Pair]] = {}  # model -> worker -> pair, most recently used last
        self._busy: dict[str, dict[str, int]] = {}  # model -> worker -> requests in flight (none: not there)
        self._evicted: dict[tuple[str, str], float] = {}
        self._evicted_by_model: dict[str, dict[str, float]] = {}  # model -> worker -> when our load evicted it
        self._evictions: dict[str, float] = {}  # worker -> our latest evicting load there, latest last
        self._latest, self._ordered = _NEVER, True

    # -- reads ---------------------------------------------------------------------------
    def get(self, worker: str) -> int:
        return self._workers.get(worker, 0)

    def view(self) -> Mapping[str, int]:
        return self._workers

    def model_inflight(self, worker: str, model: str) -> int:
        pair = self._pairs.get((worker, model))
        return pair.inflight if pair else 0

    def last_used(self, worker: str, model: str) -> float:
        pair = self._pairs.get((worker, model))
        return pair.last_used if pair else 0.0

    def active_models(self, worker: str, since: float) -> list[str]:
        """Models this worker got requests for that are in flight or newer than `since` (its last probe)."""
        pairs = self._by_worker.get(worker)
        if not pairs:
            return []
        return [m for m, p in pairs.items() if m and (p.inflight or p.last_used > since)]

    def busy_on(self, model: str) -> Mapping[str, int]:
        """Worker -> requests for `model` in flight there, for the workers that have any."""
        return self._busy.get(model, _NONE)

    def used_since(self, model: str, since: float) -> Iterator[str]:
        """Workers with a request for `model` in flight or sent after `since`."""
        busy = self._busy.get(model, {})
        yield from busy
        for worker, pair in reversed(self._recent.get(model, {}).items()):
            if pair.last_used > since:
                if worker not in busy:
                    yield worker
            elif self._ordered:
                return

    def evicted_at(self, worker: str, model: str) -> float:
        """When we last sent a load to `worker` that evicts `model` (0 when never): until the next
        probe, the snapshot still lists it resident."""
        return self._evicted.get((worker, model), 0.0)

    def evicted_on(self, model: str) -> Mapping[str, float]:
        """Worker -> when we last sent a load there that evicts `model`."""
        return self._evicted_by_model.get(model, _NONE)

    def evicted_since(self, since: float) -> Iterator[str]:
        """Workers we sent a load that evicts a model to after `since`."""
        for worker, at in reversed(self._evictions.items()):
            if at > since:
                yield worker
            elif self._ordered:
                return

    def export(self, since: float) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], float],
                                             dict[tuple[str, str], float]]:
        """What other replicas need of ours (cluster.LocalState): requests in flight per pair, pairs
        sent a request after `since` and when, our evicting loads after `since`. Reads only the
        recent end of each model's index, not every pair ever seen."""
        claims = {(w, m): n for m, workers in self._busy.items() if m for w, n in workers.items()}
        used: dict[tuple[str, str], float] = {}
        for model, workers in self._recent.items():
            if not model:
                continue
            for worker, pair in reversed(workers.items()):
                if pair.last_used > since:
                    used[(worker, model)] = pair.last_used
                elif self._ordered:
                    break
        evicted = {key: at for key, at in self._evicted.items() if at > since}
        return claims, used, evicted

    def generating(self) -> dict[tuple[str, str], int]:
        """Streams generating now per pair (cluster.LocalState): the other replicas learn a worker's
        slots from every replica's streams at once. Reads only pairs with requests in flight."""
        pairs = self._pairs
        return {(w, m): n for m, workers in self._busy.items() if m for w in workers
                if (n := pairs[(w, m)].generating)}

    # -- writes (the request path only) --------------------------------------------------
    def evicting(self, worker: str, models: Iterable[str], now: float) -> None:
        for model in models:
            self._evicted[(worker, model)] = now
            self._evicted_by_model.setdefault(model, {})[worker] = now
            self._saw(now)
            latest = self._evictions.pop(worker, _NEVER)  # re-inserted last: the latest
            self._evictions[worker] = max(latest, now)

    @contextmanager
    def claim(self, worker: str, model: str = "", now: float = 0.0) -> Iterator[_Pair]:
        self._workers[worker] = self._workers.get(worker, 0) + 1
        pair = self._pair(worker, model)
        pair.inflight += 1
        pair.last_used = max(pair.last_used, now)
        self._saw(now)
        recent = self._recent.setdefault(model, {})
        recent.pop(worker, None)  # re-inserted last: the most recently used
        recent[worker] = pair
        busy = self._busy.setdefault(model, {})
        busy[worker] = pair.inflight
        try:
            yield pair
        finally:
            self._workers[worker] -= 1
            pair.inflight -= 1
            busy = self._busy[model]
            if pair.inflight:
                busy[worker] = pair.inflight
            else:
                del busy[worker]
                if not busy:
                    del self._busy[model]

    def started(self, worker: str, model: str) -> int:
        """A stream started: returns how many of this pair's streams are generating now."""
        pair = self._pair(worker, model)
        pair.generating += 1
        return pair.generating

    def stopped(self, pair: _Pair) -> None:
        pair.generating -= 1

    def _pair(self, worker: str, model: str) -> _Pair:
        pair = self._pairs.get((worker, model))
        if pair is None:
            pair = self._pairs[(worker, model)] = _Pair()
            self._by_worker.setdefault(worker, {})[model] = pair
        return pair

    def _saw(self, now: float) -> None:
        if now < self._latest:
            self._ordered = False  # times went backwards (tests' hand-made clocks): read every entry
        self._latest = max(self._latest, now)
