"""choose(): where a request for a model should go, as an ordered Plan with reasons.

Pure: reads a Snapshot and live in-flight counts, returns a value. No I/O, no logging,
no clocks; the proxy logs the decision once, when it commits to a candidate.
Order: GPU workers with the model resident -> GPU workers with it on disk -> CPU workers
with it resident, then on disk -> (panic) workers the snapshot thinks are down, since
health data can be stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.state import Snapshot, WorkerView

UNKNOWN_MODEL = "unknown-model"
ALL_FULL = "all-full"


@dataclass(frozen=True, slots=True)
class Candidate:
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    candidates: tuple[Candidate, ...]
    verdict: str = "ok"

    @property
    def reason(self) -> str:
        return self.candidates[0].reason if self.candidates else self.verdict


def choose(snapshot: Snapshot, inflight: Mapping[str, int], model: str) -> Plan:
    workers = list(snapshot.workers.values())
    holders = [w for w in workers if w.has(model)]
    serving = [w for w in holders if w.up]
    free = [w for w in serving if not _full(w, inflight)]
    if serving and not free:
        return Plan(model, (), ALL_FULL)
    ranked = sorted(free, key=lambda w: (_rank(w, model), inflight.get(w.name, 0)))
    candidates = [Candidate(w.name, _REASONS[_rank(w, model)]) for w in ranked]
    candidates += [Candidate(w.name, "panic") for w in _panic(workers, holders, model)]
    if not candidates:
        return Plan(model, (), UNKNOWN_MODEL)
    return Plan(model, tuple(candidates))


_REASONS = {0: "resident", 1: "on-disk", 2: "cpu-resident", 3: "cpu-on-disk"}


def _rank(worker: WorkerView, model: str) -> int:
    cold = 0 if model in worker.resident else 1
    return cold if worker.tier == "gpu" else 2 + cold


def _full(worker: WorkerView, inflight: Mapping[str, int]) -> bool:
    limit = worker.config.max_inflight
    return limit is not None and inflight.get(worker.name, 0) >= limit


def _panic(workers: list[WorkerView], holders: list[WorkerView], model: str) -> list[WorkerView]:
    """Workers to try when the healthy ones cannot serve: stale health may be wrong.

    Down workers that last listed the model come first (GPU before CPU). Only when no
    worker has ever answered a probe (a gateway just started) do we try them all blind;
    otherwise a model no one lists is unknown (404), not a reason to hammer dead workers.
    """
    down = [w for w in holders if not w.up]
    if not holders and not any(w.ever_up for w in workers):
        down = workers
    return sorted(down, key=lambda w: w.tier != "gpu")
