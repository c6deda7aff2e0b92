"""The VRAM picture: capacity, use and headroom per GPU worker, and a model's footprint.

Pure functions of a Snapshot. Capacity: NVML for a GPU on this host, else config
`vram_gib`, else unknown (None). Use: NVML used memory, else the sum of `size_vram` in
`/api/ps`. Footprint: learned from `/api/ps` once the model was seen loaded anywhere, else
its file size plus the KV cache its context needs, else config `[models."X"] vram_gib`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # state imports fleet_index, which imports this module: state's types only, or the import cycles
    from gateway.state import Snapshot, WorkerView

GIB = 1024**3


def capacity(worker: WorkerView) -> int | None:
    if worker.gpu is not None and worker.gpu.ok:
        return worker.gpu.total_bytes
    if worker.config.vram_gib:
        return int(worker.config.vram_gib * GIB)
    return None


def used(worker: WorkerView) -> int:
    if worker.gpu is not None and worker.gpu.ok:
        return worker.gpu.used_bytes
    return sum(r.size_vram for r in worker.resident.values())


def free(worker: WorkerView) -> int | None:
    total = capacity(worker)
    return None if total is None else max(0, total - used(worker))


def footprint(snap: Snapshot, model: str) -> int | None:
    learned = snap.footprints.get(model)
    if learned:
        return learned
    on_disk = snap.listing.disk_size.get(model, 0)
    if on_disk:
        shape = snap.shapes.get(model)
        return on_disk + (shape.kv_bytes(snap.config.routing.kv_context) if shape else 0)
    configured = snap.config.model(model)
    if configured and configured.vram_gib:
        return int(configured.vram_gib * GIB)
    return None


def predicted_load_s(snap: Snapshot, model: str, learned_s: float | None) -> float:
    """Seconds a cold load takes: as measured for this model, else fixed cost + size / bandwidth."""
    if learned_s is not None:
        return learned_s
    policy = snap.config.routing
    size = footprint(snap, model) or 0
    return policy.load_fixed_s + size / (policy.load_gib_per_s * GIB)
