"""Keeps models warm: a pure plan_warmups(snapshot, load, now) and a bounded executor.

Plans: re-arm keep_alive of resident copies before they expire; load pinned models on
their workers; keep `keep_warm` copies on healthy GPU workers; keep any model with recent
traffic on at least one GPU worker. New copies go where the router would put a cold load,
never where they would evict a model with requests in flight, never by spilling to CPU.

A model a client explicitly unloaded (keep_alive 0: `ollama stop`, Open WebUI's unload) is
left alone, neither re-armed nor loaded, until a request asks for it again: as on Ollama, an
unload sticks. This holds for pinned and keep_warm models too: a client that unloads a model
means it now, and the operator's order resumes with the model's next request (the unload's
log line says so when it holds a pin).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from backends import for_kind
from backends.ollama import timestamp
from backends.worker_said import describe
from gateway import state
from gateway.inflight import InFlight
from gateway.keep_alive import model_settings
from gateway.metrics import Metrics
from gateway.names import InvalidModelName, canonical
from gateway.probes import Prober
from gateway.router import Load, cold_placements
from gateway.shared_load import SharedLoad
from gateway.state import Snapshot, SnapshotHolder, WorkerView

log = structlog.get_logger("gateway.warmer")
NEW_COPY = ("fits", "unknown-vram", "evict")


@dataclass(frozen=True, slots=True)
class Warmup:
    worker: str
    model: str
    reason: str  # rearm | pin | keep_warm | demand
    keep_alive: str | int | float | None = None
    options: Mapping[str, Any] | None = None  # runner options to load or re-arm the copy with


@dataclass(frozen=True, slots=True)
class _Want:
    copies: int
    pins: tuple[str, ...]
    keep_alive: str | int | float | None
    reason: str


def plan_warmups(snap: Snapshot, load: Load, demand: dict[str, float], now: float, wall_now: float,
                 held: Collection[str] = ()) -> list[Warmup]:
    """`held`: the models explicitly unloaded since their latest request, which get no warm-up."""
    plan: list[Warmup] = []
    for model, want in _wants(snap, demand, now).items():
        if model not in held:
            plan += _plan_model(snap, load, model, want, wall_now)
    return plan


def _wants(snap: Snapshot, demand: dict[str, float], now: float) -> dict[str, _Want]:
    wants: dict[str, _Want] = {}
    for name, cfg in snap.config.models.items():
        if cfg.keep_warm or cfg.pin or cfg.keep_alive is not None:
            try:
                wants[canonical(name)] = _Want(cfg.keep_warm, tuple(cfg.pin), cfg.keep_alive, "keep_warm")
            except InvalidModelName:
                continue
    window = snap.config.warmer.demand_window_s
    for model, last in demand.items():
        if now - last <= window:
            old = wants.get(model)
            wants[model] = _Want(max(1, old.copies if old else 0), old.pins if old else (),
                                 old.keep_alive if old else None, old.reason if old and old.copies else "demand")
    return wants


def _plan_model(snap: Snapshot, load: Load, model: str, want: _Want, wall_now: float) -> list[Warmup]:
    """Reads the model's holders from the snapshot's index, and its holders without a copy only
    when a copy is missing: a fleet of a thousand workers costs what the model's copies do."""
    holders = snap.holders(model)  # config order

    def usable(name: str) -> WorkerView | None:
        w = snap.workers[name]
        return w if w.up and not w.drained and w.tier == "gpu" else None

    resident = [w for n in snap.listing.resident.get(model, {}) if (w := usable(n))]
    soon = wall_now + snap.config.warmer.rearm_before_s
    plan = [Warmup(w.name, model, "rearm", want.keep_alive, _copy_options(load, w.name, model)) for w in resident
            if (expiry := timestamp(w.resident[model].expires_at)) is not None and expiry <= soon]
    pins = sorted((n for n in set(want.pins) if n in holders), key=holders.__getitem__)
    pinned = [w for n in pins if (w := usable(n)) and model not in w.resident]
    fixed = _new_copy_options(snap, model)
    plan += [Warmup(w.name, model, "pin", want.keep_alive, fixed) for w in pinned]
    missing = want.copies - len(resident) - len(pinned)
    if missing > 0:
        taken = {w.name for w in pinned}
        spare = [w for n in holders if (w := usable(n)) and model not in w.resident and n not in taken]
        places = [c for c in cold_placements(snap, load, model, spare) if c.reason in NEW_COPY][:missing]
        plan += [Warmup(c.worker, model, want.reason, want.keep_alive, fixed) for c in places]
    return plan


def _copy_options(load: Load, worker: str, model: str) -> Mapping[str, Any] | None:
    """The runner options a resident copy was loaded with, as the gateway last sent them: a re-arm
    with other ones (none, say) would make Ollama reload it (sched.go needsReload)."""
    known = load.copy_options(worker, model)
    return (known[0].as_dict() or None) if known else None


def _new_copy_options(snap: Snapshot, model: str) -> Mapping[str, Any] | None:
    """A new copy loads at the model's fixed num_ctx ([models."X"] request_num_ctx), so requests,
    which are sent with it, find the copy as they need it."""
    settings = model_settings(snap, model)
    return {"num_ctx": settings.request_num_ctx} if settings and settings.request_num_ctx else None


class Warmer:
    """Runs plan_warmups every `[warmer] interval_s`, a bounded number of warm-ups at once."""

    def __init__(self, holder: SnapshotHolder, inflight: InFlight | SharedLoad, session: aiohttp.ClientSession,
                 prober: Prober,
                 metrics: Metrics, clock: Callable[[], float], wall: Callable[[], float] = time.time) -> None:
        self._holder, self._inflight, self._session, self._prober = holder, inflight, session, prober
        self._metrics, self._clock, self._wall = metrics, clock, wall

    async def step(self) -> list[Warmup]:
        snap = self._holder.current
        warming = {w.name for w in snap.workers.values() if w.warming and w.up}
        plan = plan_warmups(snap, self._inflight, dict(self._inflight.demand()), self._clock(), self._wall(),
                            set(self._inflight.held_unloaded()))
        if plan:
            gate = asyncio.Semaphore(snap.config.warmer.concurrency)
            await asyncio.gather(*(self._run(snap, w, gate) for w in plan))
            await self._prober.refresh({w.worker for w in plan})
        if warming:  # their warm-ups ran (a failed one is retried later, as anywhere): open them to traffic
            self._holder.update(lambda s: state.with_warmed(s, warming, self._clock()))
            log.info("workers.warmed", workers=sorted(warming))
        return plan

    async def _run(self, snap: Snapshot, warmup: Warmup, gate: asyncio.Semaphore) -> None:
        worker = snap.worker(warmup.worker)
        if worker is None:
            return
        async with gate:
            if warmup.model in self._inflight.held_unloaded():  # unloaded while this warm-up waited its turn
                return
            try:
                model_id = worker.upstream_id(warmup.model)
                await for_kind(worker.config.kind).warm(self._session, worker.url, model_id, warmup.keep_alive,
                                                         snap.config.warmer.timeout_s,
                                                         headers=worker.config.auth_headers(),
                                                         max_bytes=snap.config.health.max_probe_bytes,
                                                         options=warmup.options)
            except Exception as exc:  # a failed warm-up is retried next round; it must not stop the loop
                log.warning("warmup.failed", worker=warmup.worker, model=warmup.model, reason=warmup.reason,
                            error=describe(exc))
                return
        if warmup.reason != "rearm":
            self._metrics.count_load(self._holder.current, warmup.worker, warmup.model, warmup.reason)
            log.info("model.warmed", worker=warmup.worker, model=warmup.model, reason=warmup.reason)
