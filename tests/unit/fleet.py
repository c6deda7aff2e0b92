"""Builds snapshots for pure tests through the real updaters (no hand-made state)."""

from backends.base import ModelEntry, Probe, ResidentModel
from gateway import state
from gateway.config import parse_config

GIB = 1024**3


def config(*workers: tuple[str, str], extra: str = "", max_inflight: dict | None = None):
    text = ""
    for name, tier in workers:
        text += f'[[workers]]\nname = "{name}"\nurl = "http://{name}:11434"\nkind = "ollama"\ntier = "{tier}"\n'
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
