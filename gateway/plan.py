"""The values a routing decision is made of: the Plan the router returns, its Candidates and their
Reasons, the Verdict when no candidate serves now, a request's Need, and the Load protocol (the
live traffic view the router reads, gateway.inflight.InFlight).

Values and names only: no routing here (router.py, cold.py), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # a value of load_options.py, named in annotations only: plan.py imports nothing at run time
    from gateway.load_options import LoadOptions


class Reason(StrEnum):
    """Why a candidate is in a plan: its place in the routing order (logs, metrics, /admin/explain)."""

    AFFINITY = "affinity"
    RESIDENT = "resident"
    RESIDENT_BUSY = "resident-busy"
    REPLICA = "replica"
    FITS = "fits"
    UNKNOWN_VRAM = "unknown-vram"
    EVICT = "evict"
    SPILL = "spill"
    DEGRADED = "degraded"
    CPU_RESIDENT = "cpu-resident"
    CPU = "cpu"
    PANIC = "panic"
    SHARED_LOAD = "shared-load"  # another gateway replica is loading the model there: wait for that copy
    OPTIONS = "options"  # every loaded copy has other load-time options (num_ctx...): this load is for them
    SHORT_CONTEXT = "short-context"  # a llama.cpp copy whose context (-c) is smaller than the num_ctx asked


class Verdict(StrEnum):
    OK = "ok"
    QUEUE = "queue"  # every copy is busy: wait in the model's queue (admission.py)
    UNKNOWN_MODEL = "unknown-model"
    CPU_REFUSED = "cpu-refused"  # only the CPU tier could serve, and not within [cpu] max_expected_s


UNKNOWN_MODEL, QUEUE, CPU_REFUSED = Verdict.UNKNOWN_MODEL, Verdict.QUEUE, Verdict.CPU_REFUSED
LOADS = frozenset({Reason.FITS, Reason.UNKNOWN_VRAM, Reason.EVICT, Reason.REPLICA, Reason.SPILL, Reason.CPU,
                   Reason.OPTIONS})


class Load(Protocol):
    """The live traffic view the router reads (gateway.inflight.InFlight)."""

    def get(self, worker: str) -> int: ...
    def view(self) -> Mapping[str, int]: ...
    def busy_on(self, model: str) -> Mapping[str, int]: ...
    def evicted_on(self, model: str) -> Mapping[str, float]: ...
    def model_inflight(self, worker: str, model: str) -> int: ...
    def slots(self, worker: str, model: str) -> int: ...
    def last_used(self, worker: str, model: str) -> float: ...
    def evicted_at(self, worker: str, model: str) -> float: ...
    def active_models(self, worker: str, since: float) -> list[str]: ...
    def used_since(self, model: str, since: float) -> Iterable[str]: ...
    def evicted_since(self, since: float) -> Iterable[str]: ...
    def service_s(self, model: str) -> float | None: ...
    def load_s(self, model: str) -> float | None: ...
    def session_worker(self, key: str | None) -> str | None: ...
    def decode_rate(self, worker: str, model: str) -> float | None: ...
    def worker_rate(self, worker: str) -> float | None: ...
    def slow_reason(self, worker: str) -> str | None: ...
    def slow_rate(self, worker: str) -> float | None: ...
    def slow_workers(self) -> list[str]: ...
    def copy_options(self, worker: str, model: str) -> tuple[LoadOptions, float] | None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    worker: str
    reason: str
    evicts: tuple[str, ...] = ()

    @property
    def loads(self) -> bool:
        return self.reason in LOADS


@dataclass(frozen=True, slots=True)
class Need:
    """What a request asks of a worker, to judge whether a CPU worker can finish it in time, and
    whether it may cause a replica load (a batch request waits instead: it takes only capacity
    that interactive requests leave), and its load-time options: a copy loaded with others
    reloads for it (None: not compared, any copy serves it)."""

    prompt_tokens: int
    predict_tokens: int
    batch: bool = False
    options: LoadOptions | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    candidates: tuple[Candidate, ...]
    verdict: str = Verdict.OK
    note: str = ""  # why the CPU tier refused, when it did

    @property
    def reason(self) -> str:
        return self.candidates[0].reason if self.candidates else self.verdict
