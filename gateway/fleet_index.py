"""The indexes a Snapshot carries for routing: who holds which model, and the VRAM picture.

Each is built from a Snapshot at most once (on first use, `Snapshot.listing` / `.placement`)
and the listing is carried to the next snapshot when no worker's listing changed, so routing
a request reads the model's holders and a few workers by free VRAM, never every worker.
Pure: no I/O, no clocks, no live traffic (that is the request path's, in inflight.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from gateway import vram

if TYPE_CHECKING:  # state imports this module: its types only, or the import cycles
    from gateway.state import Snapshot, WorkerView


@dataclass(frozen=True, slots=True)
class Listing:
    """What workers list, in config order, as {worker: its position in the config}: per model the
    workers that hold it (on disk or resident) and those it is loaded on; and per model its
    largest size on disk."""

    holders: Mapping[str, Mapping[str, int]]
    resident: Mapping[str, Mapping[str, int]]
    disk_size: Mapping[str, int]


def build_listing(workers: Mapping[str, WorkerView]) -> Listing:
    holders: dict[str, dict[str, int]] = {}
    resident: dict[str, dict[str, int]] = {}
    disk: dict[str, int] = {}
    for position, (name, w) in enumerate(workers.items()):
        for model, entry in w.models.items():
            holders.setdefault(model, {})[name] = position
            if entry.size > disk.get(model, 0):
                disk[model] = entry.size
        for model in w.resident:
            holders.setdefault(model, {})[name] = position
            resident.setdefault(model, {})[name] = position
    return Listing(MappingProxyType(holders), MappingProxyType(resident), MappingProxyType(disk))


def same_listing(old: WorkerView, new: WorkerView) -> bool:
    """Whether `new` lists what `old` did (names, sizes on disk, what is loaded): the listing holds."""
    if old.models is not new.models:
        if old.models.keys() != new.models.keys():
            return False
        if any(entry.size != old.models[m].size for m, entry in new.models.items()):
            return False
    return old.resident is new.resident or old.resident.keys() == new.resident.keys()


@dataclass(frozen=True, slots=True)
class Placement:
    """The workers the router walks, by kind, each as (position, name) in config order unless said:
    healthy GPU workers (serving, not degraded by their own readings) with known VRAM as
    (free bytes, position, name), most free first; those with unknown VRAM; serving GPU workers
    degraded by their readings; serving CPU workers; workers not serving that may still take
    traffic in panic. `ever_up`: any worker answered a probe once. `probe_floor`: no serving
    worker was last probed before it (live traffic older than that is older than every probe)."""

    by_free: tuple[tuple[int, int, str], ...]
    unknown_vram: tuple[tuple[int, str], ...]
    degraded: frozenset[str]
    cpus: tuple[tuple[int, str], ...]
    down: tuple[tuple[int, str], ...]
    ever_up: bool
    probe_floor: float


def build_placement(snap: Snapshot) -> Placement:
    by_free, unknown, degraded, cpus, down = [], [], set(), [], []
    ever_up, floor = False, float("inf")
    for position, (name, w) in enumerate(snap.workers.items()):
        ever_up = ever_up or w.ever_up
        if not w.serving:
            if w.routable:
                down.append((position, name))
            continue
        floor = min(floor, w.probed_at if w.probed_at is not None else float("-inf"))
        if w.tier != "gpu":
            cpus.append((position, name))
        elif w.degraded:
            degraded.add(name)
        elif (free := vram.free(w)) is None:
            unknown.append((position, name))
        else:
            by_free.append((free, position, name))
    by_free.sort(key=lambda t: (-t[0], t[1]))
    return Placement(tuple(by_free), tuple(unknown), frozenset(degraded), tuple(cpus), tuple(down), ever_up,
                     floor if floor != float("inf") else float("-inf"))
