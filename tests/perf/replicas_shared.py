"""The replicas benchmark's shared mode: a replica that routes as a gateway replica with
BEACON_REDIS_URL does, through a real private redis-server.

A replica with the `Shared` mix-in (replicas_bench.SharedReplica) routes by
`gateway.shared_load.SharedLoad` (its own InFlight plus the others' published state) and keeps a
`gateway.cluster.Cluster` whose `step()` runs every sync_s of simulated time, at its own phase,
and wakes its queue heads as app.py's on_sync does; admission depth is its own queue plus the
others' from the last sync; a cold load takes the fleet-wide lock first, as gateway/proxy.py's
`_single_flight` does, and lets it go when that request gets its slot (its first byte) or ends.
The simulation is synchronous: each Redis call runs to completion on one private event loop
(`Bridge`), so simulated time stands still while it does. The wall clock the cluster stamps and
reads is simulated time too (leases, ages); only the TTLs Redis itself enforces run in real
time, far longer than any sim step takes.
Benchmark plumbing: decides nothing the gateway's own code does not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path

import redis.asyncio as aioredis

from gateway import state, vram
from gateway.cluster import Cluster
from gateway.plan import Candidate, Plan, Reason
from gateway.router import choose
from gateway.shared_load import SharedLoad, local_state, shared_facts
from tests.perf.routing_sim import Fleet, Request


class Bridge:
    """One private event loop for every Redis call of a run; the simulation itself never runs in it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.calls = 0

    def run(self, coro: Coroutine):
        self.calls += 1
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


class PrivateRedis:
    """A redis-server of the benchmark's own on a unix socket in a private folder: no persistence,
    no TCP port, killed by stop()."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("the shared mode needs redis-server (Debian: apt-get install redis-server); "
                             "or run with --sharing none")
        self.folder = Path(tempfile.mkdtemp(prefix="replicas-bench-redis-"))
        self.socket = self.folder / "redis.sock"
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
        self.version = version[2].removeprefix("v=") if len(version) > 2 else "?"
        argv = [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"unix://{self.socket}"
        self._wait()

    def _wait(self) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.socket.exists():
                return
            time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def commands(self, bridge: Bridge) -> int:
        """Commands the server has processed so far: proof that the figures went through it."""
        async def ask() -> int:
            client = aioredis.Redis.from_url(self.url)
            try:
                return int((await client.info("stats"))["total_commands_processed"])
            finally:
                await client.aclose()

        return bridge.run(ask())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclasses.dataclass
class Sharing:
    """What the replicas of one shared run have in common: the Redis, the loop, this run's key prefix."""

    redis: PrivateRedis
    bridge: Bridge
    prefix: str
    sync_s: float
    rng: random.Random  # sync phases: apart from the group's own draws, so both modes route the same arrivals
    # requests sent to the copy another request is loading (reason shared-load), by why they would have loaded
    redirected: Counter = dataclasses.field(default_factory=Counter)


class Shared:
    """Mixed into replicas_bench.Replica: its router reads the fleet-wide view and its cold loads
    take the shared lock. Everything else is the Replica's own (routing_bench.Ours)."""

    def __init__(self, group, index: int, probe_s: float, bandwidth: float, sharing: Sharing) -> None:
        super().__init__(group, index, probe_s, bandwidth)
        self.sharing = sharing
        self.locks: dict[int, tuple[str, str]] = {}  # request -> (model, worker) whose load lock it holds

    # The snapshot lives in a SnapshotHolder, as in the gateway: local_state reads our ejections from
    # it and shared_facts writes the others' into it.
    @property
    def snap(self) -> state.Snapshot:
        return self.holder.current

    @snap.setter
    def snap(self, value: state.Snapshot) -> None:
        if "holder" not in self.__dict__:
            self.holder = state.SnapshotHolder(value)
        else:
            self.holder.update(lambda s: value)

    def attach(self, sim: Fleet, requests: list[Request]) -> None:
        super().attach(sim, requests)
        clock = lambda: sim.now  # noqa: E731 - simulated time is both clocks, monotonic and wall
        self.inflight = self.load
        depths = lambda: {m: len(q) for m, q in self.queues.items() if q}  # noqa: E731 - admission.depths()
        self.cluster = Cluster(
            self.sharing.redis.url,
            lambda: local_state(self.inflight, depths(), 2 * self.probe_s, self.holder, clock, clock),
            prefix=self.sharing.prefix, replica_id=f"r{self.index}", wall=clock,
            on_sync=lambda view: self._synced(view, clock))
        self.load = SharedLoad(self.inflight, self.cluster, clock=clock, wall=clock)
        self.sharing.bridge.run(self.cluster.start())
        sim.at(self.sharing.rng.uniform(0, self.sharing.sync_s), "sync", self)

    def sync(self) -> None:
        """cluster.step(), as the gateway's "cluster" loop runs it; after a good one every queue head
        looks again (app.py's on_sync: admission.wake_all), once the step is over, since planning
        may call Redis itself."""
        self.synced = False
        self.sharing.bridge.run(self.cluster.step())
        if self.synced:
            for model in list(self.queues):
                self.drain(model)
        if self.remaining:
            self.sim.at(self.sim.now + self.sharing.sync_s, "sync", self)

    def _synced(self, view, clock) -> None:
        """app.py's on_sync: the others' ejections and drains into our snapshot."""
        shared_facts(self.holder, view, clock, clock)
        self.synced = True

    def close(self) -> None:
        self.sharing.bridge.run(self.cluster.close())

    def plan(self, model: str, queued: int):
        """handlers/inference.py's plan(): our queue plus the other replicas' as of the last sync."""
        return choose(self.snap, self.load, model, None, queued + self.cluster.view.depths.get(model, 0), self.need)

    def send(self, req: Request, plan: Plan) -> None:
        first = plan.candidates[0] if plan.candidates else None
        if first is not None and first.loads and self.cluster.shared:
            plan = self._single_flight(req, plan, first)
        super().send(req, plan)

    def _single_flight(self, req: Request, plan: Plan, first: Candidate) -> Plan:
        """proxy._single_flight: load here only if no other replica is loading the model already;
        else go to the copy being loaded."""
        snap = self.snap
        worker = snap.worker(first.worker)
        ttl_s = (snap.config.failover.first_byte_s(worker.tier)
                 + vram.predicted_load_s(snap, plan.model, self.load.load_s(plan.model)))
        holder = self.sharing.bridge.run(self.cluster.claim_load(plan.model, first.worker, ttl_s))
        if holder == first.worker:
            self.locks[req.rid] = (plan.model, first.worker)
            return plan
        other = snap.worker(holder)
        if other is None or not other.serving:
            return plan  # that load's worker is gone: load here, without the lock
        mine = (plan.model, holder) in self.locks.values()
        self.sharing.redirected[f"{first.reason}, {'this' if mine else 'another'} replica's load"] += 1
        return dataclasses.replace(plan, candidates=(Candidate(other.name, Reason.SHARED_LOAD), *plan.candidates[1:]))

    def _release(self, req: Request) -> None:
        lock = self.locks.pop(req.rid, None)
        if lock is not None:  # loaded (its first byte came) or over: the next cold placement decides afresh
            self.sharing.bridge.run(self.cluster.release_load(*lock))

    def started(self, req: Request) -> None:
        super().started(req)
        self._release(req)

    def finished(self, req: Request) -> None:
        self._release(req)
        super().finished(req)
