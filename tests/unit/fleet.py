"""Builds snapshots for pure tests through the real updaters (no hand-made state)."""

from backends.base import ModelEntry, Probe, ResidentModel
from gateway import state
from gateway.config import parse_config

GIB = 1024**3


def config(*workers: tuple[str, str], extra: str = "", max_inflight: dict | None = None):
    text = ""
    for i, (name, tier) in enumerate(workers):
        text += f'[[workers]]\nname = "{name}"\nurl = "http://{name}:11434"\nkind = "ollama"\ntier = "{tier}"\n'
        text += f"gpu_index = {i}\n" if tier == "gpu" else ""
        if max_inflight and name in max_inflight:
            text += f"max_inflight = {max_inflight[name]}\n"
    return parse_config((text + extra).encode())


def probe(disk=(), resident=(), version="0.12.6"):
    return Probe(ok=True, version=version,
                 models=tuple(ModelEntry(n, GIB, {"name": n, "size": GIB}) for n in disk),
                 resident=tuple(ResidentModel(n, GIB, GIB, None, None, {"name": n}) for n in resident))


def snapshot(cfg, probes: dict, now: float = 100.0):
    snap = state.initial(cfg, wall_now=0.0, now=now)
    for name, p in probes.items():
        snap = state.with_probe(snap, name, p, now)
    return snap


def busy(inflight, worker: str, model: str, n: int = 1, stack=None):
    """Hold n real claims on (worker, model), as n requests in flight would."""
    from contextlib import ExitStack

    stack = stack or ExitStack()
    for _ in range(n):
        stack.enter_context(inflight.claim(worker, model))
    return stack


def resident_probe(disk=(), resident: dict | None = None, expires: dict | None = None):
    """A probe with models on disk (names, or name -> GiB) and resident (name -> GiB, all in VRAM)."""
    resident = resident or {}
    disk = disk if isinstance(disk, dict) else {d: 1.0 for d in disk}
    return Probe(ok=True, version="0.12.6",
                 models=tuple(ModelEntry(n, int(s * GIB), {"name": n}) for n, s in {**disk, **resident}.items()),
                 resident=tuple(ResidentModel(n, int(s * GIB), int(s * GIB), (expires or {}).get(n), None, {"name": n})
                                for n, s in resident.items()))


def with_vram(snap, total_gib: dict):
    """NVML readings for the workers' GPUs: total as given, used = what their resident models take."""
    from gateway.gpu import GpuReading, GpuStatus

    readings = {}
    for name, total in total_gib.items():
        w = snap.worker(name)
        used = sum(r.size_vram for r in w.resident.values())
        readings[w.config.gpu_index] = GpuReading(w.config.gpu_index, True, int(total * GIB), used)
    return state.with_gpu(snap, GpuStatus(True, "", readings))
