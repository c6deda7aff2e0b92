"""What a routing decision reads, pinned without timing: the model's holders, never the fleet.

The snapshot's workers sit behind a mapping that records every worker read and every walk over
the whole fleet; the indexes are built once per snapshot (a walk each), and then a thousand
decisions read a handful of workers each."""

from collections.abc import Iterator, Mapping
from dataclasses import replace

from backends.base import Probe
from gateway import state
from gateway.gpu import GpuReading, GpuStatus
from gateway.inflight import InFlight
from gateway.router import choose
from tests.unit.fleet import GIB, config, resident_probe

M = "llama3:latest"
OTHER = "other:latest"


class Watched(Mapping):
    """The fleet's workers, counting who reads what."""

    def __init__(self, workers: Mapping) -> None:
        self._workers, self.read, self.walks = workers, set(), 0

    def __getitem__(self, name):
        self.read.add(name)
        return self._workers[name]

    def __iter__(self) -> Iterator:
        self.walks += 1
        return iter(self._workers)

    def __len__(self) -> int:
        return len(self._workers)


def fleet(n: int, probes: dict[str, Probe], vram_gib: int | None = None):
    """Built by the real updaters; then the same snapshot with its workers watched."""
    cfg = config(*((f"gpu{i}", "gpu") for i in range(n)))
    base = state.initial(cfg, wall_now=0.0, now=100.0)
    for name, probe in probes.items():
        base = state.with_probe(base, name, probe, 100.0)
    if vram_gib:
        base = state.with_gpu(base, _readings(base, vram_gib))
    watched = Watched(base.workers)
    return replace(base, workers=watched), watched


def test_a_request_for_a_loaded_model_reads_only_its_loaded_copies():
    others = {f"gpu{i}": resident_probe(disk={OTHER: 4}, resident={OTHER: 4}) for i in range(1000)}
    copies = {"gpu10": resident_probe(resident={M: 4}), "gpu500": resident_probe(resident={M: 4})}
    snap, watched = fleet(1000, {**others, **copies})
    choose(snap, InFlight(), M)  # the first decision of a snapshot builds its indexes: one walk each
    watched.read.clear()
    walks = watched.walks
    load = InFlight()
    for i in range(1000):
        plan = choose(snap, load, M, session=f"s{i}")
        assert plan.candidates[0].worker in copies
    assert watched.walks == walks, "no decision walked the whole fleet"
    assert watched.read == set(copies), f"read {len(watched.read)} workers for a model on {len(copies)}"


def test_a_cold_load_reads_a_few_of_the_model_s_holders_not_all_of_them():
    holders = {f"gpu{i}": resident_probe(disk={M: 4}) for i in range(0, 1000, 2)}  # 500 hold it, none loaded
    others = {f"gpu{i}": resident_probe(disk={OTHER: 4}) for i in range(1, 1000, 2)}
    snap, watched = fleet(1000, {**holders, **others}, vram_gib=24)
    choose(snap, InFlight(), M)
    watched.read.clear()
    walks = watched.walks
    for _ in range(200):
        plan = choose(snap, InFlight(), M)
        assert [c.reason for c in plan.candidates[:3]] == ["fits"] * 3
    assert watched.walks == walks
    assert len(watched.read) <= 6, f"read {len(watched.read)} of the model's 500 holders for 3 candidates"


def test_a_model_no_worker_holds_reads_no_worker():
    snap, watched = fleet(1000, {f"gpu{i}": resident_probe(disk={OTHER: 4}) for i in range(1000)})
    choose(snap, InFlight(), M)
    watched.read.clear()
    walks = watched.walks
    for i in range(100):
        assert choose(snap, InFlight(), f"nope{i}:latest").verdict == "unknown-model"
    assert (watched.read, watched.walks) == (set(), walks)


def _readings(snap, total_gib: int) -> GpuStatus:
    """Every GPU the same size and all of it free: a fleet of equals, the walk's worst tie."""
    return GpuStatus(True, "", {w.config.gpu_index: GpuReading(w.config.gpu_index, True, total_gib * GIB, 0)
                                for w in snap.workers.values()})
