"""choose(): where a request for a model should go, as an ordered Plan with reasons.

Pure: reads a Snapshot and the live traffic view, returns a value. No I/O, no logging,
no clocks; the proxy logs the decision once, when it commits to a candidate.
Order: (a) healthy GPU workers with the model resident and a free slot (session affinity
first, then fewest in flight per slot); (b) GPU workers where it fits in free VRAM, most
headroom first; (c) GPU workers where loading evicts the coldest idle models; (d) the CPU
tier; (e) panic: workers the snapshot thinks are down, since health data can be stale.
While a resident copy has a free slot nothing else is loaded; when every resident copy is
busy, the request waits (verdict QUEUE) unless the predicted wait exceeds the predicted
load time, in which case a replica is loaded where it fits.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Protocol

from gateway import vram
from gateway.state import Snapshot, WorkerView

UNKNOWN_MODEL = "unknown-model"
QUEUE = "queue"
CPU_REFUSED = "cpu-refused"


class Load(Protocol):
    """The live traffic view the router reads (gateway.inflight.InFlight)."""

    def get(self, worker: str) -> int: ...
    def model_inflight(self, worker: str, model: str) -> int: ...
    def slots(self, worker: str, model: str) -> int: ...
    def last_used(self, worker: str, model: str) -> float: ...
    def evicted_at(self, worker: str, model: str) -> float: ...
    def active_models(self, worker: str, since: float) -> list[str]: ...
    def service_s(self, model: str) -> float | None: ...
    def load_s(self, model: str) -> float | None: ...
    def session_worker(self, key: str | None) -> str | None: ...
    def decode_rate(self, worker: str, model: str) -> float | None: ...
    def worker_rate(self, worker: str) -> float | None: ...
    def slow_reason(self, worker: str) -> str | None: ...
    def slow_rate(self, worker: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    worker: str
    reason: str
    evicts: tuple[str, ...] = ()

    @property
    def loads(self) -> bool:
        return self.reason in ("fits", "unknown-vram", "evict", "replica", "spill", "cpu")


@dataclass(frozen=True, slots=True)
class Need:
    """What a request asks of a worker, to judge whether a CPU worker can finish it in time."""

    prompt_tokens: int
    predict_tokens: int


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    candidates: tuple[Candidate, ...]
    verdict: str = "ok"
    note: str = ""  # why the CPU tier refused, when it did

    @property
    def reason(self) -> str:
        return self.candidates[0].reason if self.candidates else self.verdict


def choose(snap: Snapshot, load: Load, model: str, session: str | None = None, queued: int = 0,
           need: Need | None = None) -> Plan:
    workers = list(snap.workers.values())
    holders = [w for w in workers if w.has(model)]
    if not holders:
        blind = [] if any(w.ever_up for w in workers) else _gpu_first([w for w in workers if w.routable])
        return Plan(model, tuple(Candidate(w.name, "panic") for w in blind), "ok" if blind else UNKNOWN_MODEL)
    serving = [w for w in holders if w.serving]
    gpus = [w for w in serving if w.tier == "gpu"]
    healthy = [w for w in gpus if not _degraded(w, load)]
    resident = [w for w in healthy if _resident(w, model, load)]
    ready = [w for w in resident if _has_slot(w, model, load)]
    cold = cold_placements(snap, load, model, [w for w in healthy if w not in resident])
    slow = _degraded_candidates(load, model, [w for w in gpus if w not in healthy])
    cpu, refusal = _cpu(snap, load, model, [w for w in serving if w.tier == "cpu"], need)
    tail = slow + cpu if snap.config.failover.degraded_rank == "before_cpu" else cpu + slow
    panic = [Candidate(w.name, "panic") for w in _gpu_first([w for w in holders if not w.serving and w.routable])]
    if ready:
        # Busy loaded copies come after idle capacity: only a failure of the first choices reaches them.
        busy = [Candidate(w.name, "resident-busy") for w in resident if w not in ready]
        order = _order_ready(ready, load, model, session) + cold + busy + tail + panic
        return Plan(model, tuple(order), note=refusal)
    if resident:
        spare = [c for c in cold if c.reason in ("fits", "evict")]  # never spill a replica to CPU
        if spare and _wait_beats_load(snap, load, model, resident, queued):
            first = Candidate(spare[0].worker, "replica", spare[0].evicts)
            return Plan(model, (first, *[c for c in cold if c != spare[0]], *tail, *panic), note=refusal)
        # A degraded copy with a free slot serves now if it would finish before a slot frees up
        # on the healthy copies; its answer re-measures it.
        wait_s = _predicted_wait_s(load, model, resident, queued)
        idle_slow = [c for c in slow if _has_slot(snap.workers[c.worker], model, load)
                     and _resident(snap.workers[c.worker], model, load)
                     and _slow_finish_s(snap, load, model, c.worker, need) < wait_s]
        rest = [c for c in tail if c not in idle_slow]
        return Plan(model, (*idle_slow, *rest, *panic), note=refusal) if idle_slow else Plan(model, (), QUEUE)
    if cold or tail:
        return Plan(model, tuple(cold + tail + panic), note=refusal)
    if healthy:
        # Every healthy GPU is full or held by models with requests in flight: they drain soon.
        return Plan(model, (), QUEUE, note=refusal)
    if refusal:
        return Plan(model, tuple(panic), "ok" if panic else CPU_REFUSED, note=refusal)
    if panic:
        return Plan(model, tuple(panic))
    return Plan(model, (), QUEUE if serving else UNKNOWN_MODEL)


def _degraded(w: WorkerView, load: Load) -> str | None:
    return w.degraded or load.slow_reason(w.name)


def _degraded_candidates(load: Load, model: str, workers: list[WorkerView]) -> list[Candidate]:
    """Degraded GPU workers still beat nothing: loaded copies with a slot first, then the rest."""
    usable = [w for w in workers if not _worker_full(w, load)]
    ranked = sorted(usable, key=lambda w: (not (_resident(w, model, load) and _has_slot(w, model, load)),
                                            load.get(w.name)))
    return [Candidate(w.name, "degraded") for w in ranked]


def _resident(w: WorkerView, model: str, load: Load) -> bool:
    """Resident by the last probe, or by our own traffic since then: a copy we sent requests to
    after the probe ran is loaded or loading, and one we evicted since is gone, whatever that
    probe said."""
    if load.model_inflight(w.name, model):
        return True
    probed = w.probed_at if w.probed_at is not None else float("-inf")
    used = load.last_used(w.name, model)
    if model in w.resident:
        return load.evicted_at(w.name, model) <= max(probed, used)
    return used > probed


def _slots(w: WorkerView, model: str, load: Load) -> int:
    """max_inflight when the operator set it; else the slots the worker reports (llama.cpp);
    else learned slots plus one request that probes for more (Ollama's OLLAMA_NUM_PARALLEL
    is not visible over its API)."""
    return w.config.max_inflight or w.slots_total or load.slots(w.name, model) + 1


def _worker_full(w: WorkerView, load: Load) -> bool:
    return w.config.max_inflight is not None and load.get(w.name) >= w.config.max_inflight


def _has_slot(w: WorkerView, model: str, load: Load) -> bool:
    return not _worker_full(w, load) and load.model_inflight(w.name, model) < _slots(w, model, load)


def _order_ready(ready: list[WorkerView], load: Load, model: str, session: str | None) -> list[Candidate]:
    """The session's last worker first; then least busy per slot; ties broken by rendezvous hashing
    of the session, so new conversations spread over equal workers and each keeps its own."""
    sticky = load.session_worker(session)
    ranked = sorted(ready, key=lambda w: (w.name != sticky, load.model_inflight(w.name, model) / _slots(w, model, load),
                                          load.get(w.name), _rendezvous(session, w.name)))
    return [Candidate(w.name, "affinity" if w.name == sticky else "resident") for w in ranked]


def cold_placements(snap: Snapshot, load: Load, model: str, workers: list[WorkerView]) -> list[Candidate]:
    """(b) fits without eviction, most headroom first; unknown VRAM; (c) evicts the coldest idle; spill."""
    need = vram.footprint(snap, model)
    fits, unknown, evict, spill = [], [], [], []
    for w in workers:
        if _worker_full(w, load):
            continue
        free = _free(snap, w, load)
        if free is None or need is None:
            unknown.append(w)
        elif need <= free:
            fits.append((free - need, load.get(w.name), w))
        elif (victims := _victims(snap, load, w, need - free)) is not None:
            evict.append((max((load.last_used(w.name, m) for m in victims), default=0.0), len(victims), w, victims))
        elif (total := vram.capacity(w)) is not None and need > total:
            spill.append(w)  # can never fit whole: a partial offload is the only way to serve it here
        # else: only busy models stand in the way; loading now would make them drain: wait instead
    out = [Candidate(w.name, "fits") for _, _, w in sorted(fits, key=lambda t: (-t[0], t[1]))]
    out += [Candidate(w.name, "unknown-vram") for w in sorted(unknown, key=lambda w: load.get(w.name))]
    out += [Candidate(w.name, "evict", tuple(v)) for _, _, w, v in sorted(evict, key=lambda t: (t[0], t[1]))]
    return out + [Candidate(w.name, "spill") for w in sorted(spill, key=lambda w: load.get(w.name))]


def _free(snap: Snapshot, w: WorkerView, load: Load) -> int | None:
    """Free VRAM as probed, less what models we sent since then are taking (loads the probe missed)."""
    free = vram.free(w)
    if free is None:
        return None
    since = w.probed_at if w.probed_at is not None else float("-inf")
    pending = [m for m in load.active_models(w.name, since) if m not in w.resident]
    gone = sum(r.size_vram for m, r in w.resident.items() if not _resident(w, m, load))  # evicted by our loads
    return max(0, free + gone - sum(vram.footprint(snap, m) or 0 for m in pending))


def _victims(snap: Snapshot, load: Load, w: WorkerView, missing: int) -> list[str] | None:
    """The coldest idle, unpinned models whose unloading frees `missing` bytes, or None."""
    idle = [(load.last_used(w.name, m), r.expires_at or "", m, r.size_vram) for m, r in w.resident.items()
            if load.model_inflight(w.name, m) == 0 and not _pinned(snap, m, w.name) and _resident(w, m, load)]
    victims, freed = [], 0
    for _, _, m, size in sorted(idle):
        if freed >= missing:
            break
        victims.append(m)
        freed += size
    return victims if freed >= missing else None


def _pinned(snap: Snapshot, model: str, worker: str) -> bool:
    cfg = snap.config.model(model)
    return cfg is not None and worker in cfg.pin


def _cpu(snap: Snapshot, load: Load, model: str, workers: list[WorkerView], need: Need | None
         ) -> tuple[list[Candidate], str]:
    """CPU workers that can finish this request within cpu_max_expected_s, and if some could
    not, a message saying what the CPU tier can take (a fast clear refusal beats a timeout)."""
    failover = snap.config.failover
    usable = sorted((w for w in workers if not _worker_full(w, load)),
                    key=lambda w: (model not in w.resident, load.get(w.name)))
    out, refusal = [], ""
    for w in usable:
        rate = load.decode_rate(w.name, model) or load.worker_rate(w.name) or failover.cpu_tokens_per_s
        expected_s = 0.0 if need is None else need.prompt_tokens / (10 * rate) + need.predict_tokens / rate
        if expected_s > failover.cpu_max_expected_s:
            refusal = (f"no GPU worker can serve {model!r} now, and the CPU tier only takes requests it can finish "
                       f"within {failover.cpu_max_expected_s:g}s: about {int(failover.cpu_max_expected_s * rate)} "
                       f"tokens at {rate:.0f} tokens/s; this one asks for {need.predict_tokens} (~{expected_s:.0f}s). "
                       "Ask for fewer tokens (num_predict) or retry later")
            continue
        out.append(Candidate(w.name, "cpu-resident" if model in w.resident else "cpu"))
    return out, refusal


def _predicted_wait_s(load: Load, model: str, resident: list[WorkerView], queued: int) -> float:
    """How long a new request would wait for a slot on the loaded copies; 0 when nothing is measured."""
    service_s = load.service_s(model)
    if service_s is None:
        return 0.0  # nothing measured yet: a guess is no reason to load a model or go slow
    slots = sum(_slots(w, model, load) for w in resident)
    return (queued + 1) * service_s / max(1, slots)


def _wait_beats_load(snap: Snapshot, load: Load, model: str, resident: list[WorkerView], queued: int) -> bool:
    """Demand-driven scale-out: load a replica when waiting for a slot would take longer."""
    wait_s = _predicted_wait_s(load, model, resident, queued)
    return wait_s > 0 and wait_s > vram.predicted_load_s(snap, model, load.load_s(model))


def _slow_finish_s(snap: Snapshot, load: Load, model: str, worker: str, need: Need | None) -> float:
    """The time a degraded worker needs for this request: at its slow rate when measured, else at
    its usual rate divided by slow_decode_factor; unknown counts as too slow."""
    rate = load.slow_rate(worker) or (load.decode_rate(worker, model) or 0.0) / snap.config.failover.slow_decode_factor
    predict = need.predict_tokens if need else snap.config.failover.default_num_predict
    return predict / rate if rate > 0 else float("inf")


def _rendezvous(session: str | None, worker: str) -> int:
    return zlib.crc32(f"{session}\x00{worker}".encode()) if session else 0


def _gpu_first(workers: list[WorkerView]) -> list[WorkerView]:
    return sorted(workers, key=lambda w: w.tier != "gpu")
