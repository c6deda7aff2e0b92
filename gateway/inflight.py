"""Live traffic state owned by the request path: in-flight counts, learned slots, demand.

A probe never writes here: what a worker reported a moment ago is already stale, while
these counts are exact. `claim()` is the guard that makes every increment end in a
decrement. The router and the warmer read this through the `Load` view; only requests write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

SLOT_CAP = 64  # no learned slot count goes past this; a real server has fewer
_EWMA = 0.2


@dataclass(slots=True)
class _Pair:
    inflight: int = 0
    generating: int = 0
    slots: int = 1
    last_used: float = 0.0


class InFlight:
    """Per worker and per (worker, model): requests in flight, slots learned, last use."""

    def __init__(self, max_sessions: int = 65536) -> None:
        self._workers: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._last_request: dict[str, float] = {}
        self._service_s: dict[str, float] = {}
        self._load_s: dict[str, float] = {}
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._max_sessions = max_sessions

    # -- reads (the router's and warmer's view) ------------------------------------------
    def get(self, worker: str) -> int:
        return self._workers.get(worker, 0)

    def view(self) -> Mapping[str, int]:
        return self._workers

    def model_inflight(self, worker: str, model: str) -> int:
        pair = self._pairs.get((worker, model))
        return pair.inflight if pair else 0

    def slots(self, worker: str, model: str) -> int:
        pair = self._pairs.get((worker, model))
        return pair.slots if pair else 1

    def last_used(self, worker: str, model: str) -> float:
        pair = self._pairs.get((worker, model))
        return pair.last_used if pair else 0.0

    def active_models(self, worker: str, since: float) -> list[str]:
        """Models this worker got requests for that are in flight or newer than `since` (its last probe)."""
        return [m for (w, m), p in self._pairs.items() if w == worker and m and (p.inflight or p.last_used > since)]

    def service_s(self, model: str) -> float | None:
        return self._service_s.get(model)

    def load_s(self, model: str) -> float | None:
        return self._load_s.get(model)

    def demand(self) -> Mapping[str, float]:
        """Model -> monotonic time of its latest request."""
        return self._last_request

    def session_worker(self, key: str | None) -> str | None:
        return self._sessions.get(key) if key else None

    # -- writes (the request path only) --------------------------------------------------
    def requested(self, model: str, now: float) -> None:
        self._last_request[model] = now

    @contextmanager
    def claim(self, worker: str, model: str = "", now: float = 0.0) -> Iterator[Claim]:
        self._workers[worker] = self._workers.get(worker, 0) + 1
        pair = self._pairs.setdefault((worker, model), _Pair())
        pair.inflight += 1
        pair.last_used = max(pair.last_used, now)
        claim = Claim(self, worker, model)
        try:
            yield claim
        finally:
            self._workers[worker] -= 1
            pair.inflight -= 1
            if claim.started:
                pair.generating -= 1

    def first_byte(self, worker: str, model: str) -> None:
        """A stream started: as many streams generating at once as the worker has slots, at least."""
        pair = self._pairs.setdefault((worker, model), _Pair())
        pair.generating += 1
        pair.slots = min(SLOT_CAP, max(pair.slots, pair.generating))

    def finished(self, model: str, duration_s: float, load_s: float | None) -> None:
        self._service_s[model] = _ewma(self._service_s.get(model), duration_s)
        if load_s is not None and load_s > 0.05:  # a real load, not a warm model's bookkeeping
            self._load_s[model] = _ewma(self._load_s.get(model), load_s)

    def remember_session(self, key: str | None, worker: str) -> None:
        if not key:
            return
        self._sessions[key] = worker
        self._sessions.move_to_end(key)
        if len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)


class Claim:
    """One request's hold on a worker slot; marks when its stream started."""

    __slots__ = ("_owner", "worker", "model", "started")

    def __init__(self, owner: InFlight, worker: str, model: str) -> None:
        self._owner, self.worker, self.model, self.started = owner, worker, model, False

    def first_byte(self) -> None:
        if not self.started:
            self.started = True
            self._owner.first_byte(self.worker, self.model)


def _ewma(old: float | None, value: float) -> float:
    return value if old is None else old + _EWMA * (value - old)
