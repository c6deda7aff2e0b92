"""One worker's copy of one model as the router sees it: the snapshot's last probe, corrected by our
own traffic since (loads we sent that the probe missed, evictions we caused), its slots, the
VRAM left free, and whether it serves a request's load-time options without a reload. Pure
functions of a Snapshot, a WorkerView and the live traffic view.
"""

from __future__ import annotations

from gateway import load_options, vram
from gateway.load_options import NO_OPTIONS, LoadOptions
from gateway.plan import Load
from gateway.state import Snapshot, WorkerView


def is_loaded(w: WorkerView, model: str, load: Load) -> bool:
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


def serves(w: WorkerView, model: str, load: Load, asked: LoadOptions | None, train: int | None) -> bool:
    """The copy on `w` serves `asked` without a reload (load_options.reuses), or, on a fixed-context
    server (llama.cpp, OpenAI-compatible), fits its num_ctx (load_options.honours). The options we
    last sent there are the copy's, unless a probe since shows another context with none of our
    requests in flight there: somebody else reloaded it (a replica, a client of the worker's own).
    `train`: the model's training context (load_options.train_ctx), read once per decision."""
    if asked is None:
        return True
    if w.config.kind != "ollama":
        r = w.resident.get(model)
        return load_options.honours(asked, r.context_length if r is not None else None, train)
    sent = load.copy_options(w.name, model)
    if sent is None and asked == NO_OPTIONS:
        return True  # the usual case: the defaults, and a copy taken to have them (the router asks per copy)
    r = w.resident.get(model)
    probed = r.context_length if r is not None else None
    if sent is None:
        return load_options.reuses(asked, None, probed, train)
    options, at = sent
    if (probed is not None and options.num_ctx is not None and w.probed_at is not None and w.probed_at > at
            and load_options.effective_ctx(options.num_ctx, train) != probed
            and not load.model_inflight(w.name, model)):
        return load_options.reuses(asked, None, probed, train)
    return load_options.reuses(asked, options, probed, train)


def slot_count(w: WorkerView, model: str, load: Load) -> int:
    """max_inflight when the operator set it; else the slots the worker reports (llama.cpp);
    else learned slots plus one request that probes for more (Ollama's OLLAMA_NUM_PARALLEL
    is not visible over its API)."""
    return w.config.max_inflight or w.slots_total or load.slots(w.name, model) + 1


def worker_full(w: WorkerView, load: Load) -> bool:
    return w.config.max_inflight is not None and load.get(w.name) >= w.config.max_inflight


def has_slot(w: WorkerView, model: str, load: Load) -> bool:
    return not worker_full(w, load) and load.model_inflight(w.name, model) < slot_count(w, model, load)


def free_vram(snap: Snapshot, w: WorkerView, load: Load) -> int | None:
    """Free VRAM as probed, less what models we sent since then are taking (loads the probe missed)."""
    free = vram.free(w)
    if free is None:
        return None
    since = w.probed_at if w.probed_at is not None else float("-inf")
    pending = [m for m in load.active_models(w.name, since) if m not in w.resident]
    gone = sum(r.size_vram for m, r in w.resident.items() if not is_loaded(w, m, load))  # evicted by our loads
    return max(0, free + gone - sum(vram.footprint(snap, m) or 0 for m in pending))


def victims(snap: Snapshot, load: Load, w: WorkerView, missing: int) -> list[str] | None:
    """The coldest idle, unpinned models whose unloading frees `missing` bytes, or None."""
    idle = [(load.last_used(w.name, m), r.expires_at or "", m, r.size_vram) for m, r in w.resident.items()
            if load.model_inflight(w.name, m) == 0 and not pinned(snap, m, w.name) and is_loaded(w, m, load)]
    victims, freed = [], 0
    for _, _, m, size in sorted(idle):
        if freed >= missing:
            break
        victims.append(m)
        freed += size
    return victims if freed >= missing else None


def pinned(snap: Snapshot, model: str, worker: str) -> bool:
    cfg = snap.config.model(model)
    return cfg is not None and worker in cfg.pin
