"""Live traffic state owned by the request path: in-flight counts, learned slots, demand.

A probe never writes here: what a worker reported a moment ago is already stale, while
these counts are exact. `claim()` is the guard that makes every increment end in a
decrement. The router and the warmer read this through the `Load` view; only requests write.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
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

    def __init__(self, max_sessions: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rates: dict[tuple[str, str], float] = {}
        self._seen_rates: dict[tuple[str, str], tuple[float, float]] = {}  # (worker, model) -> (when, rate)
        self._slow: dict[str, tuple[float, str, float]] = {}
        self._workers: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._last_request: dict[str, float] = {}
        self._service_s: dict[str, float] = {}
        self._load_s: dict[str, float] = {}
        self._evicted: dict[tuple[str, str], float] = {}
        self._sessions: dict[str, str] = {}  # insertion-ordered: oldest first (a plain dict is a third smaller)
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

    def evicted_at(self, worker: str, model: str) -> float:
        """When we last sent a load to `worker` that evicts `model` (0 when never): until the next
        probe, the snapshot still lists it resident."""
        return self._evicted.get((worker, model), 0.0)

    def service_s(self, model: str) -> float | None:
        return self._service_s.get(model)

    def load_s(self, model: str) -> float | None:
        return self._load_s.get(model)

    def demand(self) -> Mapping[str, float]:
        """Model -> monotonic time of its latest request."""
        return self._last_request

    def session_worker(self, key: str | None) -> str | None:
        return self._sessions.get(key) if key else None

    def decode_rate(self, worker: str, model: str) -> float | None:
        """Tokens/s this worker decodes this model at, as measured from its answers."""
        return self._rates.get((worker, model))

    def worker_rate(self, worker: str) -> float | None:
        rates = [r for (w, _), r in self._rates.items() if w == worker]
        return sum(rates) / len(rates) if rates else None

    def recent_rate(self, worker: str, window_s: float = 60.0) -> float | None:
        """For people, not routing: the mean decode rate of this worker's models as last measured
        within `window_s`, slow outliers included; None when it decoded nothing that recently."""
        since = self._clock() - window_s
        rates = [r for (w, _), (at, r) in self._seen_rates.items() if w == worker and at >= since]
        return sum(rates) / len(rates) if rates else None

    def slow_reason(self, worker: str) -> str | None:
        """Why this worker counts as degraded by its own answers, while that lasts."""
        until, reason, _ = self._slow.get(worker, (0.0, "", 0.0))
        return reason if until > self._clock() else None

    def slow_rate(self, worker: str) -> float | None:
        """The decode rate that made this worker count as degraded, while that verdict lasts."""
        until, _, rate = self._slow.get(worker, (0.0, "", 0.0))
        return rate if until > self._clock() else None

    # -- writes (the request path only) --------------------------------------------------
    def requested(self, model: str, now: float) -> None:
        self._last_request[model] = now

    def evicting(self, worker: str, models: Iterable[str], now: float) -> None:
        for model in models:
            self._evicted[(worker, model)] = now

    @contextmanager
    def claim(self, worker: str, model: str = "", now: float = 0.0) -> Iterator[Claim]:
        self._workers[worker] = self._workers.get(worker, 0) + 1
        pair = self._pairs.setdefault((worker, model), _Pair())
        pair.inflight += 1
        pair.last_used = max(pair.last_used, now)
        claim = Claim(self, worker, model, pair.inflight)
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

    def learn_slots(self, worker: str, model: str, at_least: int) -> None:
        """A request the worker served without queueing, sent while `at_least - 1` others were in flight:
        a FIFO worker served them all at once, so it has at least that many slots."""
        pair = self._pairs.setdefault((worker, model), _Pair())
        pair.slots = min(SLOT_CAP, max(pair.slots, at_least))

    def finished(self, model: str, duration_s: float, load_s: float | None) -> None:
        self._service_s[model] = _ewma(self._service_s.get(model), duration_s)
        if load_s is not None and load_s > 0.05:  # a real load, not a warm model's bookkeeping
            self._load_s[model] = _ewma(self._load_s.get(model), load_s)

    def record_rate(self, worker: str, model: str, rate: float, slow_factor: float, degraded_s: float,
                    concurrency: int = 1) -> None:
        """A decode rate far below this worker's own learned rate for the model marks it degraded
        (a lost GPU decodes at CPU speed) for degraded_s; the learned rate ignores such outliers.
        A batching server splits its speed over the streams it runs (16 streams on an H100 each get
        about a sixth of one alone), so the verdict weighs the rate by the streams running with it."""
        self._seen_rates[(worker, model)] = (self._clock(), rate)
        learned = self._rates.get((worker, model))
        if learned is not None and rate * max(1, concurrency) < learned / slow_factor:
            reason = f"decodes {model} at {rate:.0f} tokens/s, {learned / rate:.0f}x below its usual {learned:.0f}"
            self._slow[worker] = (self._clock() + degraded_s, reason, rate)
            return
        self._slow.pop(worker, None)  # back at its usual speed: trusted again at once
        self._rates[(worker, model)] = _ewma(learned, rate)

    def remember_session(self, key: str | None, worker: str) -> None:
        if not key:
            return
        self._sessions.pop(key, None)  # re-inserted last: the most recently used
        self._sessions[key] = worker
        if len(self._sessions) > self._max_sessions:
            del self._sessions[next(iter(self._sessions))]


class Claim:
    """One request's hold on a worker slot; marks when its stream started."""

    __slots__ = ("_owner", "worker", "model", "started", "peers")

    def __init__(self, owner: InFlight, worker: str, model: str, peers: int = 1) -> None:
        self._owner, self.worker, self.model, self.started = owner, worker, model, False
        self.peers = peers  # requests in flight to this worker and model when this one was sent, itself included

    def first_byte(self) -> None:
        if not self.started:
            self.started = True
            self._owner.first_byte(self.worker, self.model)


def _ewma(old: float | None, value: float) -> float:
    return value if old is None else old + _EWMA * (value - old)


class RetryBudget:
    """Retries may be at most `ratio` of requests over the last `window_s`, plus a floor of
    `min_per_s`, so a sick fleet is not flooded with retries (Envoy/Finagle retry budgets)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = 10.0) -> None:
        self._clock, self._window_s = clock, window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def request(self) -> None:
        self._requests.append(self._clock())

    def allow_retry(self, ratio: float, min_per_s: float) -> bool:
        now = self._clock()
        for q in (self._requests, self._retries):
            while q and q[0] < now - self._window_s:
                q.popleft()
        if len(self._retries) >= max(ratio * len(self._requests), min_per_s * self._window_s):
            return False
        self._retries.append(now)
        return True
