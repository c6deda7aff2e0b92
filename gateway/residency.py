"""One worker's copy of one model as the router sees it: the snapshot's last probe, corrected by our
own traffic since (loads we sent that the probe missed, evictions we caused), its slots, and the
VRAM left free. Pure functions of a Snapshot, a WorkerView and the live traffic view.
"""

from __future__ import annotations

from gateway import vram
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
