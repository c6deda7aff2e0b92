"""Plain records of the simulated worker's state: its modes, a resident model and the runner
options it was loaded with, the counters tests read, and the two ways a wait for a slot can end
without one.

Data only: the engine in engine.py changes these; nothing here does I/O or keeps time.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from local_workers.sim.models import SimModel

MODES = ("ok", "slow", "hang", "error", "drop", "malformed", "gpu_lost")
SLOWDOWN = 20.0  # "slow" and "gpu_lost" decode this many times slower, as Ollama on CPU does


class Busy(Exception):
    """The queue is full: Ollama answers 503 "server busy"."""


class ModelGone(Exception):
    """The model was deleted while a request waited for it."""


@dataclass(frozen=True, slots=True)
class Runner:
    """The runner options a copy is loaded with, as Ollama's needsReload compares them: num_ctx as
    settled (clamped), num_gpu (a request's negative value matches any copy), and the rest as read."""

    num_ctx: int
    num_gpu: int = -1
    others: tuple = ()

    def serves(self, asked: Runner) -> bool:
        return (self.num_ctx == asked.num_ctx and self.others == asked.others
                and (asked.num_gpu < 0 or asked.num_gpu == self.num_gpu))


@dataclass(slots=True, eq=False)
class Resident:
    """One loaded (or loading) model. `draining`: unload as soon as its last request ends."""

    model: SimModel
    size_vram: int
    keep_alive_s: float
    ready_at: float | None = None  # monotonic time the load finished; None while loading
    expires_at: float = math.inf
    active: int = 0
    draining: bool = False
    runner: Runner = Runner(0)  # what it was loaded with; a request that asks other options reloads it
    reloading: bool = False  # draining to load again with the next request's options (not an eviction)

    @property
    def idle(self) -> bool:
        return self.ready_at is not None and self.active == 0


@dataclass(slots=True)
class Stats:
    loads: list[str] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)  # every unload, evictions included
    evictions: list[str] = field(default_factory=list)  # unloads made to fit another model
    requests: Counter = field(default_factory=Counter)
    authorization: Counter = field(default_factory=Counter)  # Authorization headers seen, for leak checks
    cancelled: int = 0  # accepted requests whose client went away before the answer ended
    completed: int = 0
    dropped: int = 0  # connections the "drop" mode cut
