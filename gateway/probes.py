"""Active health and residency: probe every worker, publish what was learned.

One `step()` probes all workers, a bounded number at once, and lands the round's results
in one snapshot swap (or a bounded few) with the pure `state.with_probes`. Only transitions
are logged (worker.up / worker.down).
Never touches in-flight counts: those belong to the request path.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable

import aiohttp
import structlog

from backends import Probe, for_kind
from gateway import state
from gateway.state import SnapshotHolder, WorkerView

log = structlog.get_logger("gateway.probes")
PUBLISH_S = 0.5  # while a round runs, what landed is published at least this often


class Prober:
    def __init__(self, holder: SnapshotHolder, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._holder, self._session, self._clock = holder, session, clock
        self._shape_tried: set[str] = set()
        self._running: asyncio.Future | None = None
        # worker -> (its last full probe, the names it listed, when to list it again)
        self._listings: dict[str, tuple[Probe, frozenset[str], float]] = {}

    async def step(self, jitter_s: float = 0.0) -> None:
        """One probe round of every worker; the control loop passes [health] jitter_s. Residency is
        read every round; the disk listing and version at least every [health] listing_interval_s
        (always while a worker is not up), from backends that can read residency alone."""
        now = self._clock()
        self._holder.update(lambda s: state.with_ejections_expired(s, now))
        workers = self._holder.current.workers
        for name in [n for n in self._listings if n not in workers]:  # removed by a reload
            del self._listings[name]
        await self._probe_all(workers, jitter_s, self._round_probe)
        await self._learn_shapes()

    async def fresh(self, names: Iterable[str], min_age_s: float) -> None:
        """Probe these workers for a caller that needs them as they are now, but none of them more
        often than once per `min_age_s`: while a worker's last probe is younger, the probe waits for
        it to age. Callers that arrive meanwhile share the one probe, so a client calling in a loop
        costs each worker at most one probe per min_age_s (a control-loop probe counts too)."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._fresh(list(names), min_age_s))
        await asyncio.shield(self._running)

    async def _fresh(self, names: list[str], min_age_s: float) -> None:
        snap, now = self._holder.current, self._clock()
        probed = [w.probed_at for n in names if (w := snap.worker(n)) is not None and w.probed_at is not None]
        wait = max((min_age_s - (now - at) for at in probed), default=0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        await self.refresh(names)

    async def refresh(self, names: Iterable[str]) -> None:
        """Probe these workers now, in full (after a pull or delete, so lists are fresh at once)."""
        await self._probe_all(names, 0.0, self._full_probe)

    async def _probe_all(self, names: Iterable[str], jitter_s: float,
                         probe: Callable[[WorkerView, float], Awaitable[Probe]]) -> None:
        """At most [health] concurrency probes run at once, each runner starting after a random
        share of `jitter_s`, so a thousand workers are not hit in the same millisecond. Results
        land together: one snapshot swap when the probes end, and one per PUBLISH_S before that
        while slow ones (up to timeout_s) hold the round, so a round swaps a bounded few times."""
        snap = self._holder.current
        chosen = [w for n in names if (w := snap.worker(n)) is not None]
        workers, health, landed = iter(chosen), snap.config.health, {}

        async def runner(delay_s: float) -> None:
            if delay_s:
                await asyncio.sleep(delay_s)
            for worker in workers:  # shared: each runner takes the next worker not yet probed
                landed[worker.name] = await probe(worker, health.timeout_s)

        tasks = [asyncio.ensure_future(runner(random.uniform(0, jitter_s) if jitter_s else 0.0))
                 for _ in range(min(health.concurrency, len(chosen)))]
        try:
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=PUBLISH_S)
                batch, landed = landed, {}
                self._publish(batch)
        finally:
            for task in tasks:
                task.cancel()
        for task in tasks:
            task.result()  # a runner that failed (a bug, not a worker: _probe catches those) says so

    async def _full_probe(self, worker: WorkerView, timeout_s: float) -> Probe:
        probe = await self._probe(worker, timeout_s)
        if probe.ok:  # listed again at a random point in the second half of the interval: rounds share the reads
            due = self._clock() + self._holder.current.config.health.listing_interval_s * random.uniform(0.5, 1.0)
            self._listings[worker.name] = (probe, frozenset(e.name for e in probe.models), due)
        return probe

    async def _round_probe(self, worker: WorkerView, timeout_s: float) -> Probe:
        """Residency alone, over the worker's last full probe, while that is recent and the worker up."""
        light = getattr(for_kind(worker.config.kind), "probe_resident", None)
        last, health = self._listings.get(worker.name), self._holder.current.config.health
        if (light is None or last is None or not worker.up or self._clock() >= last[2]
                or health.listing_interval_s <= health.interval_s):
            return await self._full_probe(worker, timeout_s)
        full, names, _ = last
        try:
            probe = await light(self._session, worker.url, timeout_s, headers=worker.config.auth_headers(),
                                max_bytes=health.max_probe_bytes)
        except Exception as exc:  # a backend bug must not take the whole step down
            log.exception("probe.crashed", worker=worker.name)
            return Probe(ok=False, error=f"probe crashed: {type(exc).__name__}")
        if not probe.ok:
            return probe
        if any(r.name not in names for r in probe.resident):  # loaded but not listed: pulled meanwhile
            self._listings[worker.name] = (full, names, 0.0)  # listed again next round
        return Probe(ok=True, version=full.version, models=full.models, resident=probe.resident,
                     latency_s=probe.latency_s, slots_total=full.slots_total, slots_busy=full.slots_busy)

    async def _probe(self, worker: WorkerView, timeout_s: float) -> Probe:
        try:
            return await for_kind(worker.config.kind).probe(
                self._session, worker.url, timeout_s, headers=worker.config.auth_headers(),
                names=worker.config.models, max_bytes=self._holder.current.config.health.max_probe_bytes)
        except Exception as exc:  # a backend bug must not take the whole step down
            log.exception("probe.crashed", worker=worker.name)
            return Probe(ok=False, error=f"probe crashed: {type(exc).__name__}")

    async def _learn_shapes(self, limit: int = 4) -> None:
        """Ask /api/show for the KV-cache shape of models never seen loaded: sizes cold loads.
        Reads the model index (models, not every worker's listing); the shapes land in one swap."""
        snap = self._holder.current
        wanted: dict[str, WorkerView] = {}
        for model, holders in snap.listing.holders.items():
            if len(wanted) >= limit:
                break
            if model not in snap.footprints and model not in self._shape_tried:
                worker = next((w for n in holders if (w := snap.workers[n]).up and model in w.models), None)
                if worker is not None:
                    wanted[model] = worker
        self._shape_tried.update(wanted)
        if len(self._shape_tried) > 4096:  # only names some worker still lists are worth remembering
            self._shape_tried.intersection_update(snap.listing.holders)
        timeout_s = snap.config.health.timeout_s
        shapes = await asyncio.gather(*(self._shape(w, m, timeout_s) for m, w in wanted.items()))
        learned = {model: shape for model, shape in zip(wanted, shapes, strict=True) if shape is not None}
        self._holder.update(lambda s: state.with_shapes(s, learned))

    async def _shape(self, worker: WorkerView, model: str, timeout_s: float):
        try:
            return await for_kind(worker.config.kind).shape(self._session, worker.url, model, timeout_s,
                                                            self._holder.current.config.health.max_probe_bytes,
                                                            headers=worker.config.auth_headers())
        except Exception:  # metadata is a refinement: without it the file size stands in
            return None

    def _publish(self, probes: dict[str, Probe]) -> None:
        """Probe results in one swap; transitions logged, in config order."""
        if not probes:
            return
        before, now = self._holder.current, self._clock()
        after = self._holder.update(lambda s: state.with_probes(s, probes, now))
        _ = after.listing, after.placement  # built here, in the control loop, not by the next request
        for name in (n for n in after.workers if n in probes):
            old, new = before.worker(name), after.workers[name]
            if old is None or old.up == new.up:
                continue
            if new.up:
                log.info("worker.up", worker=name, models=len(new.models), resident=sorted(new.resident))
            else:
                log.warning("worker.down", worker=name, error=new.last_error)

