"""Live traffic state owned by the request path, as one view over its parts by job: claims and
counts (claims.py), learned slots, rates and service times (learned.py), conversations' last
workers and per-model demand and explicit unloads (below).

A probe never writes here: what a worker reported a moment ago is already stale, while these
counts are exact. The router and the warmer read this through the `Load` view; only requests
write (and, with replicas, the unloads the others took are adopted: shared_load.py). Every read is
of one worker or one model: none scans the whole fleet's traffic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from math import inf
from typing import Protocol

from gateway.claims import Claims
from gateway.learned import SLOT_CAP, Durations, LoadedWith, Rates, Slots

__all__ = ["SLOT_CAP", "Claim", "Demand", "InFlight", "RetryBudget", "Sessions"]


class Sessions:
    """Conversation key -> the worker that last served it; the oldest forgotten past `max_sessions`."""

    def __init__(self, max_sessions: int = 65536) -> None:
        self._sessions: dict[str, str] = {}  # insertion-ordered: oldest first (a plain dict is a third smaller)
        self._max = max_sessions

    def worker(self, key: str | None) -> str | None:
        return self._sessions.get(key) if key else None

    def remember(self, key: str | None, worker: str) -> None:
        if not key:
            return
        self._sessions.pop(key, None)  # re-inserted last: the most recently used
        self._sessions[key] = worker
        if len(self._sessions) > self._max:
            del self._sessions[next(iter(self._sessions))]


class Demand:
    """Per model, the monotonic time of its latest request (what the warmer keeps loaded) and of
    an explicit unload since (keep_alive 0): the warmer leaves such a model alone until it is
    asked for again. An unload another replica took may be adopted as ours (shared_load.py), so
    that it outlives that replica; a copy of our own that comes back from the others (the same
    time, give or take clock reads) is not taken for a later unload."""

    ECHO_S = 1.0  # an adopted unload this close after ours is ours coming back, not a new one

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.unloads: dict[str, float] = {}  # only unloads no request has followed yet

    def requested(self, model: str, now: float) -> None:
        self.last[model] = now
        if self.unloads:  # the request path's one write: a request ends the model's unload
            self.unloads.pop(model, None)

    def unloaded(self, model: str, now: float) -> None:
        self.unloads[model] = now

    def adopt(self, model: str, at: float) -> None:
        """Another replica's unload at `at` (our clock): ours too unless a request here came since."""
        if at >= self.last.get(model, -inf) and at > self.unloads.get(model, -inf) + self.ECHO_S:
            self.unloads[model] = at


class InFlight:
    """The request path's live view over its parts. Each read and write below is the part's own
    bound method, not a wrapper: the router makes several such calls per candidate worker."""

    def __init__(self, max_sessions: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.claims, self.slots_learned, self.rates = Claims(), Slots(), Rates(clock)
        self.durations, self.sessions, self.demanded = Durations(), Sessions(max_sessions), Demand()
        self.loaded_with = LoadedWith()
        claims, rates, durations = self.claims, self.rates, self.durations
        # claims and counts
        self.get, self.view, self.model_inflight = claims.get, claims.view, claims.model_inflight
        self.last_used, self.active_models, self.used_since = claims.last_used, claims.active_models, claims.used_since
        self.busy_on, self.evicted_on = claims.busy_on, claims.evicted_on
        self.evicting, self.evicted_at, self.evicted_since = claims.evicting, claims.evicted_at, claims.evicted_since
        # learned slots, rates and service times
        self.slots, self.learn_slots = self.slots_learned.get, self.slots_learned.at_least
        self.decode_rate, self.worker_rate, self.recent_rate = rates.decode_rate, rates.worker_rate, rates.recent_rate
        self.slow_reason, self.slow_rate, self.slow_workers = rates.slow_reason, rates.slow_rate, rates.slow_workers
        self.record_rate = rates.record
        self.service_s, self.load_s, self.finished = durations.service_s, durations.load_s, durations.finished
        self.copy_options, self.sent_options = self.loaded_with.get, self.loaded_with.sent
        # sessions and demand
        self.session_worker, self.remember_session = self.sessions.worker, self.sessions.remember
        self.requested, self.unloaded = self.demanded.requested, self.demanded.unloaded

    def demand(self) -> Mapping[str, float]:
        """Model -> monotonic time of its latest request."""
        return self.demanded.last

    def held_unloaded(self) -> Mapping[str, float]:
        """Model -> when it was explicitly unloaded, for the models no request has asked for since."""
        return self.demanded.unloads

    @contextmanager
    def claim(self, worker: str, model: str = "", now: float = 0.0) -> Iterator[Claim]:
        with self.claims.claim(worker, model, now) as pair:
            claim = Claim(self, worker, model, pair.inflight)
            try:
                yield claim
            finally:
                if claim.started:
                    self.claims.stopped(pair)

    def first_byte(self, worker: str, model: str) -> None:
        """A stream started: as many streams generating at once as the worker has slots, at least."""
        self.slots_learned.at_least(worker, model, self.claims.started(worker, model))


class StreamCounter(Protocol):
    """Who counts a claim's stream once it starts: InFlight, or shared_load.SharedLoad for replicas."""

    def first_byte(self, worker: str, model: str) -> None: ...


class Claim:
    """One request's hold on a worker slot; marks when its stream started."""

    __slots__ = ("_owner", "worker", "model", "started", "peers")

    def __init__(self, owner: StreamCounter, worker: str, model: str, peers: int = 1) -> None:
        self._owner, self.worker, self.model, self.started = owner, worker, model, False
        self.peers = peers  # requests in flight to this worker and model when this one was sent, itself included

    def first_byte(self) -> None:
        if not self.started:
            self.started = True
            self._owner.first_byte(self.worker, self.model)


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
