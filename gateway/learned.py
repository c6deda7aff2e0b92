"""What answers taught the gateway: slots per (worker, model), decode rates and slow verdicts per
worker, service and load times per model, and the load-time options of the last request sent to
each (worker, model). Indexed by worker as well, so that a worker's figures are read without
scanning the others'.

Only the request path writes here, from answers it relayed; probes never do (a probe is stale
the moment it lands). Nothing here counts requests in flight (claims.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.load_options import LoadOptions

SLOT_CAP = 64  # no learned slot count goes past this; a real server has fewer
_EWMA = 0.2


class Slots:
    """Parallel slots per (worker, model), learned from what the worker did at once."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], int] = {}

    def get(self, worker: str, model: str) -> int:
        return self._slots.get((worker, model), 1)

    def learned(self) -> Mapping[tuple[str, str], int]:
        """Every (worker, model) -> slots learned so far: what other replicas may route by."""
        return self._slots

    def at_least(self, worker: str, model: str, count: int) -> None:
        key = (worker, model)
        self._slots[key] = min(SLOT_CAP, max(self._slots.get(key, 1), count))


class Rates:
    """Decode rates per (worker, model) as measured, and the slow verdicts they give."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rates: dict[str, dict[str, float]] = {}  # worker -> model -> learned tokens/s
        self._seen: dict[str, dict[str, tuple[float, float]]] = {}  # worker -> model -> (when, tokens/s)
        self._slow: dict[str, tuple[float, str, float]] = {}  # worker -> (until, reason, rate)

    def decode_rate(self, worker: str, model: str) -> float | None:
        return self._rates.get(worker, {}).get(model)

    def worker_rate(self, worker: str) -> float | None:
        rates = list(self._rates.get(worker, {}).values())
        return sum(rates) / len(rates) if rates else None

    def recent_rate(self, worker: str, window_s: float = 60.0) -> float | None:
        since = self._clock() - window_s
        rates = [r for at, r in self._seen.get(worker, {}).values() if at >= since]
        return sum(rates) / len(rates) if rates else None

    def slow_reason(self, worker: str) -> str | None:
        until, reason, _ = self._slow.get(worker, (0.0, "", 0.0))
        return reason if until > self._clock() else None

    def slow_rate(self, worker: str) -> float | None:
        until, _, rate = self._slow.get(worker, (0.0, "", 0.0))
        return rate if until > self._clock() else None

    def slow_workers(self) -> list[str]:
        """The workers a slow verdict holds for now (few: a lost GPU, a throttled card)."""
        if not self._slow:
            return []
        now = self._clock()
        return [w for w, (until, _, _) in self._slow.items() if until > now]

    def record(self, worker: str, model: str, rate: float, slow_factor: float, degraded_s: float,
               concurrency: int = 1) -> None:
        self._seen.setdefault(worker, {})[model] = (self._clock(), rate)
        rates = self._rates.setdefault(worker, {})
        learned = rates.get(model)
        if learned is not None and rate * max(1, concurrency) < learned / slow_factor:
            reason = f"decodes {model} at {rate:.0f} tokens/s, {learned / rate:.0f}x below its usual {learned:.0f}"
            self._slow[worker] = (self._clock() + degraded_s, reason, rate)
            return
        self._slow.pop(worker, None)  # back at its usual speed: trusted again at once
        rates[model] = ewma(learned, rate)


class Durations:
    """Per model: how long a request keeps a slot busy, and how long a cold load takes."""

    def __init__(self) -> None:
        self._service_s: dict[str, float] = {}
        self._load_s: dict[str, float] = {}

    def service_s(self, model: str) -> float | None:
        return self._service_s.get(model)

    def load_s(self, model: str) -> float | None:
        return self._load_s.get(model)

    def learned(self) -> tuple[Mapping[str, float], Mapping[str, float]]:
        """(service times, load times) per model, for other replicas that have not measured them."""
        return self._service_s, self._load_s

    def finished(self, model: str, duration_s: float, load_s: float | None) -> None:
        self._service_s[model] = ewma(self._service_s.get(model), duration_s)
        if load_s is not None and load_s > 0.05:  # a real load, not a warm model's bookkeeping
            self._load_s[model] = ewma(self._load_s.get(model), load_s)


class LoadedWith:
    """(worker, model) -> the load-time options of the last request sent there, and when. A server
    holds one copy of a model and reloads it for a request with other options, so this is the
    option set of the copy there now, as far as our own traffic knows (gateway/load_options.py)."""

    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], tuple[LoadOptions, float]] = {}

    def get(self, worker: str, model: str) -> tuple[LoadOptions, float] | None:
        return self._sent.get((worker, model))

    def sent(self, worker: str, model: str, options: LoadOptions | None, now: float) -> None:
        if options is not None:  # None: a request whose options were not read (it loads nothing)
            self._sent[(worker, model)] = (options, now)


def ewma(old: float | None, value: float) -> float:
    return value if old is None else old + _EWMA * (value - old)
