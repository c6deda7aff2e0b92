"""Live per-worker in-flight counts, owned by the request path.

A probe never writes here: what a worker reported a moment ago is already stale, while
these counts are exact. `claim()` is the guard that makes every increment end in a decrement.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class InFlight:
    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def get(self, worker: str) -> int:
        return self._counts.get(worker, 0)

    def view(self) -> Mapping[str, int]:
        return self._counts

    @contextmanager
    def claim(self, worker: str) -> Iterator[None]:
        self._counts[worker] = self._counts.get(worker, 0) + 1
        try:
            yield
        finally:
            self._counts[worker] -= 1
