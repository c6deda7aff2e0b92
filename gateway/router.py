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
A copy loaded with other load-time options than the request's (num_ctx...) is no loaded copy
for it: the worker would reload it (load_options.py). Then the request is a load like a cold
one (reason "options"), placed as one, and only after those placements on a copy of the model
with other options, the idle ones first: that evicts the copy other clients use. A llama.cpp
copy whose context is smaller than the num_ctx asked serves only when nothing else can.

Cost grows with the model's copies, not the fleet: a decision reads the model's loaded
copies, then only as many further workers as the plan's `limit` candidates need (the
snapshot's indexes give the holders, and healthy GPU workers by free VRAM).
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway import load_options, vram
from gateway.cold import Cold, cold_placements, healthy
from gateway.load_options import NO_OPTIONS
from gateway.plan import CPU_REFUSED, LOADS, QUEUE, UNKNOWN_MODEL, Candidate, Load, Need, Plan, Reason, Verdict
from gateway.residency import has_slot, is_loaded, serves, slot_count, worker_full
from gateway.state import Snapshot, WorkerView

# What other modules import from here: the values of a decision live in plan.py, the cold tier in cold.py.
__all__ = ["CPU_REFUSED", "LOADS", "QUEUE", "UNKNOWN_MODEL", "Candidate", "Load", "Need", "Plan", "Reason", "Verdict",
           "choose", "cold_placements"]

_NONE: Mapping = MappingProxyType({})
_NO_NAMES: frozenset[str] = frozenset()


def choose(snap: Snapshot, load: Load, model: str, session: str | None = None, queued: int = 0,
           need: Need | None = None, limit: int | None = None) -> Plan:
    """The plan for one request: at most `limit` candidates (default [failover] max_attempts,
    as many as the proxy tries), in the routing order."""
    d = _Decision(snap, load, model, session, need, limit or snap.config.failover.max_attempts)
    if not d.holders:
        return _no_worker_holds_it(d)
    if d.ready:
        return _a_loaded_copy_has_a_slot(d)
    if d.resident:
        return _every_loaded_copy_is_busy(d, queued)
    return _load_it_somewhere(d)


def _no_worker_holds_it(d: _Decision) -> Plan:
    """Unknown to the fleet; before any worker ever answered, every worker is tried blind."""
    if d.snap.placement.ever_up:
        return Plan(d.model, (), UNKNOWN_MODEL)
    blind = _gpu_first([w for w in d.snap.workers.values() if w.routable])[: d.limit]
    return Plan(d.model, tuple(Candidate(w.name, Reason.PANIC) for w in blind), Verdict.OK if blind else UNKNOWN_MODEL)


def _a_loaded_copy_has_a_slot(d: _Decision) -> Plan:
    """(a) Loaded copies with a free slot; busy loaded copies come after idle capacity: only a
    failure of the first choices reaches them."""
    return Plan(d.model, d.take(d.ready_order, d.cold.first, d.busy, d.tail, d.panic), note=d.refusal)


def _every_loaded_copy_is_busy(d: _Decision, queued: int) -> Plan:
    """Load a replica when waiting for a slot would take longer (never for a batch request on its
    own: it waits); else a degraded copy with a free
    slot serves now if it would finish before a slot frees up on the healthy copies (its answer
    re-measures it); else wait."""
    copies = [w for _, w in d.resident]
    batch = d.need is not None and d.need.batch
    spare = None if batch or not _wait_beats_load(d.snap, d.load, d.model, copies, queued) else d.cold.spare()
    if spare is not None:
        rest = [c for c in d.cold.first(d.limit) if c != spare]
        return Plan(d.model, d.take([Candidate(spare.worker, Reason.REPLICA, spare.evicts)], rest, d.tail, d.panic),
                    note=d.refusal)
    wait_s = _predicted_wait_s(d.load, d.model, copies, queued)
    idle_slow = [c for c in d.slow if _serves_slowly_now(d, c.worker, wait_s)]
    if not idle_slow:
        return Plan(d.model, (), QUEUE)
    rest = [c for c in d.tail(len(idle_slow) + d.limit) if c not in idle_slow]
    return Plan(d.model, d.take(idle_slow, rest, d.panic), note=d.refusal)


def _load_it_somewhere(d: _Decision) -> Plan:
    """(b) fits, (c) evicts, (d) CPU, (e) panic; a full fleet of healthy GPUs means wait. When
    copies with other load-time options are what is loaded, every load is for the options, and a
    llama.cpp copy too short for the request's num_ctx comes before the CPU tier."""
    cold, short, tail = d.cold.first(d.limit), d.short_context, d.tail(d.limit)
    if d.mismatched or d.short:
        cold = [Candidate(c.worker, Reason.OPTIONS, c.evicts) for c in cold]
    if cold or short or tail:
        return Plan(d.model, d.take(cold, short, tail, d.panic), note=d.refusal)
    if d.any_holder(d.healthy):
        # Every healthy GPU is full or held by models with requests in flight: they drain soon.
        return Plan(d.model, (), QUEUE, note=d.refusal)
    panic = d.panic(d.limit)
    if d.refusal:
        return Plan(d.model, panic, Verdict.OK if panic else CPU_REFUSED, note=d.refusal)
    if panic:
        return Plan(d.model, panic)
    return Plan(d.model, (), QUEUE if d.any_holder(lambda w: w.serving) else UNKNOWN_MODEL)


class _Decision:
    """One request's view of the fleet: the model's holders, its loaded copies, and each further
    tier computed only when a plan reaches it, and only as far as the plan needs."""

    def __init__(self, snap: Snapshot, load: Load, model: str, session: str | None, need: Need | None,
                 limit: int) -> None:
        self.snap, self.load, self.model, self.session, self.need, self.limit = snap, load, model, session, need, limit
        self.workers, self.holders = snap.workers, snap.holders(model)
        if not self.holders:
            return
        self.placement = snap.placement
        self.slow_now = frozenset(load.slow_workers()) or _NO_NAMES
        self.options = need.options if need is not None else None
        self.train = load_options.train_ctx(snap, model) if self.options is not None else None
        self.mismatched: list[str] = []  # healthy copies loaded with other load-time options: a load reloads them
        self.short: list[str] = []  # healthy fixed-context copies too short for the num_ctx asked
        self.resident, self.ready = self._loaded_copies()
        # Cold holds no reference back to the decision: a decision leaves no cycle for the GC to find.
        self.cold = Cold(snap, load, model, self.placement, self.slow_now, tuple(self.mismatched))
        self._parts: tuple[list[Candidate], list[Candidate], str] | None = None

    def healthy(self, w: WorkerView) -> bool:
        return healthy(w, self.placement, self.slow_now)

    def _loaded_copies(self) -> tuple[list[tuple[int, WorkerView]], list[tuple[int, WorkerView, float]]]:
        """Healthy holders with the model loaded, as the last probe said or as we sent it since,
        and those of them with a free slot (with their in-flight share of slots), config order.
        The loop reads the per-model indexes at once: it runs for every loaded copy."""
        load, model, holders, workers = self.load, self.model, self.holders, self.workers
        degraded, slow, options = self.placement.degraded, self.slow_now, self.options
        plain, sent_to = options == NO_OPTIONS, load.copy_options
        probed = self.snap.listing.resident.get(model, _NONE)
        recent = load.used_since(model, self.placement.probe_floor)
        since_probe = {n for n in recent if n in holders and n not in probed}
        copies = [*probed.items(), *sorted(((n, holders[n]) for n in since_probe), key=lambda t: t[1])]
        busy, evicted, counts = load.busy_on(model), load.evicted_on(model), load.view()
        resident, ready = [], []
        for name, pos in copies:
            w = workers[name]
            if not w.serving or w.tier != "gpu" or name in degraded or name in slow:
                continue
            inflight = busy.get(name, 0)
            # Without a request in flight, a probed copy is there unless our load evicted it since.
            if not inflight and (name in evicted or name in since_probe) and not is_loaded(w, model, load):
                continue
            # A copy the gateway never sent options to serves a request of the defaults (the usual case, asked here
            # without a call); any other pair asks whether the copy serves the request's options (load_options.py).
            if options is not None and (not plain or sent_to(name, model) is not None) \
                    and not serves(w, model, load, options, self.train):
                (self.mismatched if w.config.kind == "ollama" else self.short).append(name)
                continue
            resident.append((pos, w))
            cap = w.config.max_inflight
            slots = cap or w.slots_total or load.slots(name, model) + 1
            if inflight < slots and (cap is None or counts.get(name, 0) < cap):
                ready.append((pos, w, inflight / slots))
        if since_probe:
            resident.sort(key=lambda t: t[0])
            ready.sort(key=lambda t: t[0])
        return resident, ready

    def ready_order(self, k: int) -> list[Candidate]:
        """The session's last worker first; then least busy per slot; ties broken by rendezvous hashing
        of the session, so new conversations spread over equal workers and each keeps its own."""
        load, session = self.load, self.session
        sticky = load.session_worker(session)
        salt = zlib.crc32(f"{session}\x00".encode()) if session else None
        keys = [(w.name != sticky, share, load.get(w.name), 0 if salt is None else zlib.crc32(w.name.encode(), salt),
                 pos, w.name) for pos, w, share in self.ready]
        best = heapq.nsmallest(k, keys)  # pos breaks the last ties: config order, as a stable sort keeps it
        return [Candidate(name, Reason.AFFINITY if name == sticky else Reason.RESIDENT) for *_, name in best]

    @property
    def short_context(self) -> list[Candidate]:
        """llama.cpp copies whose context is smaller than the num_ctx asked: they serve it (within
        their own context) only when no copy or load can honour it, the least busy first."""
        load, model = self.load, self.model
        usable = [w for n in self.short if has_slot(w := self.workers[n], model, load)]
        return [Candidate(w.name, Reason.SHORT_CONTEXT) for w in sorted(usable, key=lambda w: load.get(w.name))]

    def busy(self, k: int) -> list[Candidate]:
        ready = {w.name for _, w, _ in self.ready}
        return [Candidate(w.name, Reason.RESIDENT_BUSY) for _, w in self.resident if w.name not in ready][:k]

    @property
    def slow(self) -> list[Candidate]:
        return self._tail_parts()[0]

    @property
    def refusal(self) -> str:
        return self._tail_parts()[2]

    def tail(self, k: int) -> list[Candidate]:
        """Degraded GPU workers and the CPU tier, in the order [degraded] rank says."""
        slow, cpu, _ = self._tail_parts()
        return (slow + cpu if self.snap.config.degraded.rank == "before_cpu" else cpu + slow)[:k]

    def _tail_parts(self) -> tuple[list[Candidate], list[Candidate], str]:
        if self._parts is None:
            workers = [self.workers[n] for _, n in self.placement.cpus if n in self.holders]
            cpu, refusal = _cpu(self.snap, self.load, self.model, workers, self.need)
            self._parts = (self._degraded(), cpu, refusal)
        return self._parts

    def _degraded(self) -> list[Candidate]:
        """Degraded GPU workers still beat nothing: loaded copies with a slot first, then the rest."""
        load, model = self.load, self.model
        names = (self.placement.degraded | self.slow_now) & self.holders.keys()
        usable = [(self.holders[n], w) for n in names if (w := self.workers[n]).serving and w.tier == "gpu"
                  and not worker_full(w, load)]
        ranked = sorted(usable, key=lambda t: (not (is_loaded(t[1], model, load) and has_slot(t[1], model, load)
                                                    and serves(t[1], model, load, self.options, self.train)),
                                               load.get(t[1].name), t[0]))
        return [Candidate(w.name, Reason.DEGRADED) for _, w in ranked]

    def panic(self, k: int) -> tuple[Candidate, ...]:
        down = [self.workers[n] for _, n in self.placement.down if n in self.holders]
        return tuple(Candidate(w.name, Reason.PANIC) for w in _gpu_first(down)[:k])

    def any_holder(self, test: Callable[[WorkerView], bool]) -> bool:
        return any(test(self.workers[n]) for n in self.holders)

    def take(self, *tiers) -> tuple[Candidate, ...]:
        """The first `limit` candidates of the tiers in order; a tier is a list, or a function of
        how many more are wanted, called only when the plan reaches it."""
        out: list[Candidate] = []
        for tier in tiers:
            wanted = self.limit - len(out)
            if wanted <= 0:
                break
            out.extend((tier(wanted) if callable(tier) else tier)[:wanted])
        return tuple(out)


def _serves_slowly_now(d: _Decision, worker: str, wait_s: float) -> bool:
    w = d.workers[worker]
    return (has_slot(w, d.model, d.load) and is_loaded(w, d.model, d.load)
            and serves(w, d.model, d.load, d.options, d.train)
            and _slow_finish_s(d.snap, d.load, d.model, worker, d.need) < wait_s)


def _cpu(snap: Snapshot, load: Load, model: str, workers: list[WorkerView], need: Need | None
         ) -> tuple[list[Candidate], str]:
    """CPU workers that can finish this request within [cpu] max_expected_s, and if some could
    not, a message saying what the CPU tier can take (a fast clear refusal beats a timeout)."""
    cpu, options = snap.config.cpu, need.options if need is not None else None
    train = load_options.train_ctx(snap, model) if options is not None else None
    loaded = {w.name for w in workers if model in w.resident  # a llama.cpp CPU worker serves it within its -c
              and (w.config.kind != "ollama" or serves(w, model, load, options, train))}
    usable = sorted((w for w in workers if not worker_full(w, load)),
                    key=lambda w: (w.name not in loaded, load.get(w.name)))
    out, refusal = [], ""
    for w in usable:
        rate = load.decode_rate(w.name, model) or load.worker_rate(w.name) or cpu.tokens_per_s
        expected_s = 0.0 if need is None else need.prompt_tokens / (10 * rate) + need.predict_tokens / rate
        if need is not None and expected_s > cpu.max_expected_s:
            refusal = (f"no GPU worker can serve {model!r} now, and the CPU tier only takes requests it can finish "
                       f"within {cpu.max_expected_s:g}s: about {int(cpu.max_expected_s * rate)} "
                       f"tokens at {rate:.0f} tokens/s; this one asks for {need.predict_tokens} (~{expected_s:.0f}s). "
                       "Ask for fewer tokens (num_predict) or retry later")
            continue
        out.append(Candidate(w.name, Reason.CPU_RESIDENT if w.name in loaded else Reason.CPU))
    return out, refusal


def _predicted_wait_s(load: Load, model: str, resident: list[WorkerView], queued: int) -> float:
    """How long a new request would wait for a slot on the loaded copies; 0 when nothing is measured."""
    service_s = load.service_s(model)
    if service_s is None:
        return 0.0  # nothing measured yet: a guess is no reason to load a model or go slow
    slots = sum(slot_count(w, model, load) for w in resident)
    return (queued + 1) * service_s / max(1, slots)


def _wait_beats_load(snap: Snapshot, load: Load, model: str, resident: list[WorkerView], queued: int) -> bool:
    """Demand-driven scale-out: load a replica when waiting for a slot would take longer."""
    wait_s = _predicted_wait_s(load, model, resident, queued)
    return wait_s > 0 and wait_s > vram.predicted_load_s(snap, model, load.load_s(model))


def _slow_finish_s(snap: Snapshot, load: Load, model: str, worker: str, need: Need | None) -> float:
    """The time a degraded worker needs for this request: at its slow rate when measured, else at
    its usual rate divided by slow_decode_factor; unknown counts as too slow."""
    rate = load.slow_rate(worker) or (load.decode_rate(worker, model) or 0.0) / snap.config.degraded.slow_decode_factor
    predict = need.predict_tokens if need else snap.config.routing.default_num_predict
    return predict / rate if rate > 0 else float("inf")


def _gpu_first(workers: list[WorkerView]) -> list[WorkerView]:
    return sorted(workers, key=lambda w: w.tier != "gpu")

