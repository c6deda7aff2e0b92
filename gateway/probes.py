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

    async def step(self) -> None:
        await self.refresh(self._holder.current.workers)

    async def refresh(self, names: Iterable[str]) -> None:
        """Probe these workers now (after a pull or delete, so lists are fresh at once)."""
        snap = self._holder.current
        workers = [w for n in names if (w := snap.worker(n)) is not None]
        timeout_s = snap.config.health.timeout_s
        probes = await asyncio.gather(*(self._probe(w, timeout_s) for w in workers))
        for worker, probe in zip(workers, probes):
            self._publish(worker.name, probe)

    async def _probe(self, worker: WorkerView, timeout_s: float) -> Probe:
        try:
            return await for_kind(worker.config.kind).probe(self._session, worker.url, timeout_s)
        except Exception as exc:  # a backend bug must not take the whole step down
            log.exception("probe.crashed", worker=worker.name)
            return Probe(ok=False, error=f"probe crashed: {type(exc).__name__}")

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
