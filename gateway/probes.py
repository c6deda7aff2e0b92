"""Active health and residency: probe every worker, publish what was learned.

One `step()` probes all workers concurrently and applies each result to the snapshot
with the pure `state.with_probe`. Only transitions are logged (worker.up / worker.down).
Never touches in-flight counts: those belong to the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import aiohttp
import structlog

from backends import Probe, for_kind
from gateway import state
from gateway.state import SnapshotHolder, WorkerView

log = structlog.get_logger("gateway.probes")


class Prober:
    def __init__(self, holder: SnapshotHolder, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._holder, self._session, self._clock = holder, session, clock
        self._shape_tried: set[str] = set()
        self._running: asyncio.Future | None = None

    async def step(self) -> None:
        now = self._clock()
        self._holder.update(lambda s: state.with_ejections_expired(s, now))
        await self.refresh(self._holder.current.workers)
        await self._learn_shapes()

    async def fresh(self) -> None:
        """Probe everyone now; callers that arrive while such a probe runs share it."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self.refresh(self._holder.current.workers))
        await asyncio.shield(self._running)

    async def refresh(self, names: Iterable[str]) -> None:
        """Probe these workers now (after a pull or delete, so lists are fresh at once)."""
        snap = self._holder.current
        workers = [w for n in names if (w := snap.worker(n)) is not None]
        timeout_s = snap.config.health.timeout_s
        probes = await asyncio.gather(*(self._probe(w, timeout_s) for w in workers))
        for worker, probe in zip(workers, probes, strict=True):
            self._publish(worker.name, probe)

    async def _probe(self, worker: WorkerView, timeout_s: float) -> Probe:
        try:
            return await for_kind(worker.config.kind).probe(self._session, worker.url, timeout_s,
                                                            headers=worker.config.auth_headers(),
                                                            names=worker.config.models)
        except Exception as exc:  # a backend bug must not take the whole step down
            log.exception("probe.crashed", worker=worker.name)
            return Probe(ok=False, error=f"probe crashed: {type(exc).__name__}")

    async def _learn_shapes(self, limit: int = 4) -> None:
        """Ask /api/show for the KV-cache shape of models never seen loaded: sizes cold loads."""
        snap = self._holder.current
        wanted: dict[str, WorkerView] = {}
        for worker in snap.up_workers():
            for model in worker.models:
                if model not in snap.footprints and model not in self._shape_tried and len(wanted) < limit:
                    wanted.setdefault(model, worker)
        self._shape_tried.update(wanted)
        timeout_s = snap.config.health.timeout_s
        shapes = await asyncio.gather(*(self._shape(w, m, timeout_s) for m, w in wanted.items()))
        for model, shape in zip(wanted, shapes, strict=True):
            if shape is not None:
                self._holder.update(lambda s, m=model, sh=shape: state.with_shape(s, m, sh))

    async def _shape(self, worker: WorkerView, model: str, timeout_s: float):
        try:
            return await for_kind(worker.config.kind).shape(self._session, worker.url, model, timeout_s)
        except Exception:  # metadata is a refinement: without it the file size stands in
            return None

    def _publish(self, name: str, probe: Probe) -> None:
        before = self._holder.current.worker(name)
        now = self._clock()
        after = self._holder.update(lambda s: state.with_probe(s, name, probe, now)).worker(name)
        if before is None or after is None or before.up == after.up:
            return
        if after.up:
            log.info("worker.up", worker=name, models=len(after.models), resident=sorted(after.resident))
        else:
            log.warning("worker.down", worker=name, error=after.last_error)


class GpuWatch:
    """Reads NVML for the GPUs named by workers' gpu_index, off the event loop."""

    def __init__(self, holder: SnapshotHolder, reader) -> None:
        self._holder, self._reader = holder, reader
        self._last_reason: str | None = None

    async def step(self) -> None:
        snap = self._holder.current
        indices = sorted({w.config.gpu_index for w in snap.workers.values() if w.config.gpu_index is not None})
        if not indices:
            return
        status = await asyncio.to_thread(self._reader.read, indices)
        self._holder.update(lambda s: state.with_gpu(s, status))
        if status.reason != self._last_reason:  # say it once, quietly: no NVML is normal
            self._last_reason = status.reason
            if not status.available:
                log.info("gpu.nvml_unavailable", reason=status.reason)
            for reading in status.readings.values():
                if not reading.ok:
                    log.warning("gpu.read_failed", gpu_index=reading.index, error=reading.error)
