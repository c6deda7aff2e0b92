"""Live state shared between gateway replicas and processes through Redis.

Each replica publishes what it alone knows (its in-flight claims and streams, the loads and
evictions it caused since the last probe, its queue depths, learned slots and service times, the
explicit unloads no request has followed there) as one blob under a key that expires with its
lease, and reads everyone else's in the background. The router reads the merged `ClusterView`
synchronously; the request path awaits Redis only where a decision must be atomic across
replicas (client limits, cold-load single flight) or needs a fact no background view can hold
(a conversation's worker), and always within a short bound.

Without a Redis URL, or while Redis is unreachable, `view` is empty and every call answers as a
lone process would: the gateway never fails a request because Redis did. Makes no routing
decisions and never writes the snapshot itself (the caller applies remote ejections and drains).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError
from redis.retry import Retry

log = structlog.get_logger("gateway.cluster")

_EMPTY: Mapping = MappingProxyType({})
Pair = tuple[str, str]

# Fleet-wide concurrency: counts per (client, replica), summed over live replicas only, so a
# replica that died stops counting once its lease runs out. KEYS: counts, replicas.
# ARGV: replica, limit, now_ms, ttl_ms. Returns the new total, or -total when refused.
_ENTER = """
local alive = {}
alive[ARGV[1]] = true
for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[3], '+inf')) do alive[r] = true end
local total, counts = 0, redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  if alive[counts[i]] then total = total + tonumber(counts[i + 1])
  else redis.call('HDEL', KEYS[1], counts[i]) end
end
local limit = tonumber(ARGV[2])
if limit > 0 and total >= limit then return -total end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return total + 1
"""

# Fleet-wide requests per minute: a sliding log of at most `limit` entries a client.
# KEYS: log. ARGV: now_ms, limit, member. Returns {1, 0} when admitted, {0, oldest_ms} when not.
_RATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 60000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.floor(tonumber(oldest[2]))}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], 60000)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the other live replicas hold, as of the last sync. Times are wall-clock seconds."""

    replicas: int = 1  # live replicas, this one included
    claims: Mapping[Pair, int] = field(default_factory=lambda: _EMPTY)
    workers: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # worker -> requests in flight
    busy: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: _EMPTY)  # model -> worker -> in flight
    used: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: _EMPTY)  # model -> worker -> last sent
    by_worker: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: _EMPTY)  # worker -> model -> last
    evicted: Mapping[Pair, float] = field(default_factory=lambda: _EMPTY)
    evictions: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # worker -> latest evicting load
    evicted_by_model: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: _EMPTY)  # model -> worker
    depths: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    slots: Mapping[Pair, int] = field(default_factory=lambda: _EMPTY)
    service_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    load_s: Mapping[str, float] = field(default_factory=lambda: _EMPTY)
    ejections: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # worker -> ejected until
    drained: frozenset[str] = frozenset()
    started: Mapping[Pair, int] = field(default_factory=lambda: _EMPTY)  # streams generating now
    unloaded: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # model -> latest explicit unload


LONE = ClusterView()


@dataclass(frozen=True, slots=True)
class LocalState:
    """One replica's own contribution, as the request path knows it exactly."""

    claims: Mapping[Pair, int]  # requests in flight
    used: Mapping[Pair, float]  # when each pair was last sent a request, recent ones only (wall clock)
    evicted: Mapping[Pair, float]  # loads we sent that evict a model, recent ones only (wall clock)
    depths: Mapping[str, int]
    slots: Mapping[Pair, int]
    service_s: Mapping[str, float]
    load_s: Mapping[str, float]
    ejections: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # ours: worker -> until (wall)
    drained: frozenset[str] = frozenset()  # as our snapshot has them: re-published to a Redis that lost them
    started: Mapping[Pair, int] = field(default_factory=lambda: _EMPTY)  # streams generating now
    unloaded: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # model -> unloaded at, no request since

    def encode(self) -> bytes:
        return orjson.dumps({
            "claims": [[w, m, n] for (w, m), n in self.claims.items() if n],
            "started": [[w, m, n] for (w, m), n in self.started.items() if n],
            "used": [[w, m, t] for (w, m), t in self.used.items()],
            "evicted": [[w, m, t] for (w, m), t in self.evicted.items()],
            "depths": {m: d for m, d in self.depths.items() if d},
            "slots": [[w, m, n] for (w, m), n in self.slots.items() if n > 1],
            "service_s": dict(self.service_s),
            "load_s": dict(self.load_s),
            "unloaded": dict(self.unloaded),
        })


def merge(blobs: list[bytes | None], ejections: Mapping[str, float], drained: frozenset[str],
          replicas: int) -> ClusterView:
    """Everyone else's blobs as one view: counts add up, learned slots take the largest, times
    the latest, service and load times the mean. A blob that does not parse is skipped."""
    claims: dict[Pair, int] = {}
    started: dict[Pair, int] = {}
    used: dict[Pair, float] = {}
    evicted: dict[Pair, float] = {}
    depths: dict[str, int] = {}
    slots: dict[Pair, int] = {}
    service: dict[str, list[float]] = {}
    load: dict[str, list[float]] = {}
    unloaded: dict[str, float] = {}
    for blob in blobs:
        data = _decode(blob)
        if data is None:
            continue
        for w, m, n in _triples(data.get("claims")):
            claims[(w, m)] = claims.get((w, m), 0) + int(n)
        for w, m, n in _triples(data.get("started")):
            started[(w, m)] = started.get((w, m), 0) + int(n)
        for w, m, t in _triples(data.get("used")):
            used[(w, m)] = max(used.get((w, m), 0.0), float(t))
        for w, m, t in _triples(data.get("evicted")):
            evicted[(w, m)] = max(evicted.get((w, m), 0.0), float(t))
        for m, d in (data.get("depths") or {}).items():
            depths[str(m)] = depths.get(str(m), 0) + int(d)
        for w, m, n in _triples(data.get("slots")):
            slots[(w, m)] = max(slots.get((w, m), 1), int(n))
        for m, v in (data.get("service_s") or {}).items():
            service.setdefault(str(m), []).append(float(v))
        for m, v in (data.get("load_s") or {}).items():
            load.setdefault(str(m), []).append(float(v))
        for m, t in (data.get("unloaded") or {}).items():
            unloaded[str(m)] = max(unloaded.get(str(m), 0.0), float(t))
    workers: dict[str, int] = {}
    busy: dict[str, dict[str, int]] = {}
    for (w, m), n in claims.items():
        workers[w] = workers.get(w, 0) + n
        busy.setdefault(m, {})[w] = n
    by_model: dict[str, dict[str, float]] = {}
    by_worker: dict[str, dict[str, float]] = {}
    for (w, m), t in used.items():
        by_model.setdefault(m, {})[w] = t
        by_worker.setdefault(w, {})[m] = t
    evictions: dict[str, float] = {}
    evicted_by_model: dict[str, dict[str, float]] = {}
    for (w, m), t in evicted.items():
        evictions[w] = max(evictions.get(w, 0.0), t)
        evicted_by_model.setdefault(m, {})[w] = t
    return ClusterView(
        replicas=replicas, claims=claims, workers=workers, busy=busy, used=by_model, by_worker=by_worker,
        evicted=evicted, evictions=evictions, evicted_by_model=evicted_by_model, depths=depths, slots=slots,
        service_s={m: sum(v) / len(v) for m, v in service.items()},
        load_s={m: sum(v) / len(v) for m, v in load.items()},
        ejections=dict(ejections), drained=drained, started=started, unloaded=unloaded)


def _decode(blob: bytes | None) -> dict[str, Any] | None:
    if not blob:
        return None
    try:
        data = orjson.loads(blob)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _triples(items: Any) -> list[tuple[str, str, Any]]:
    if not isinstance(items, list):
        return []
    return [(str(i[0]), str(i[1]), i[2]) for i in items if isinstance(i, list) and len(i) == 3]


class Cluster:
    """The shared picture and the atomic calls. `redis_url=None` is one process alone: `view`
    stays LONE and each call answers from nothing but this process."""

    def __init__(self, redis_url: str | None, local: Callable[[], LocalState], *, prefix: str = "beacon:",
                 lease_s: float = 3.0, op_timeout_s: float = 0.25, session_ttl_s: float = 3600.0,
                 replica_id: str | None = None, wall: Callable[[], float] = time.time,
                 on_sync: Callable[[ClusterView], None] = lambda view: None) -> None:
        self.replica_id = replica_id or f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
        self._url, self._local, self._prefix = redis_url, local, prefix
        self._lease_s, self._op_timeout_s, self._session_ttl_s = lease_s, op_timeout_s, session_ttl_s
        self._wall = wall
        self._redis: Any = None
        self.view: ClusterView = LONE
        self.mode = "shared" if redis_url else "alone"  # alone | shared | local (Redis unreachable)
        self.problem: str | None = None
        self.sync_failures = 0
        self._on_mode: list[Callable[[str], None]] = []
        self._on_sync = on_sync
        self._pending_drains: dict[str, bool] = {}  # drains made while Redis was out of reach
        self._epoch: bytes | None = None  # which Redis (since its last restart) we last synced with
        self._later: set[asyncio.Task] = set()

    @classmethod
    def alone(cls) -> Cluster:
        """One process alone: nothing is shared, every call answers from this process."""
        return cls(None, lambda: LocalState({}, {}, {}, {}, {}, {}, {}))

    @property
    def enabled(self) -> bool:
        return self._url is not None

    @property
    def shared(self) -> bool:
        return self.mode == "shared"

    def on_mode(self, callback: Callable[[str], None]) -> None:
        self._on_mode.append(callback)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def start(self) -> None:
        if self._url is None:
            return
        self._redis = aioredis.Redis.from_url(
            self._url, socket_timeout=self._op_timeout_s, socket_connect_timeout=self._op_timeout_s,
            # one immediate retry on a fresh connection: a pooled one dies with every Redis restart
            retry=Retry(NoBackoff(), 1), health_check_interval=0, decode_responses=False)
        await self.step()

    async def close(self) -> None:
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self._op_timeout_s):
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(self._key("r", self.replica_id))
                pipe.zrem(self._key("replicas"), self.replica_id)
                await pipe.execute()
        except Exception:  # leaving: the lease expires by itself anyway
            pass
        await self._redis.aclose()
        self._redis = None

    # -- the background sync ---------------------------------------------------------------
    async def step(self) -> None:
        """Publish this replica's state under its lease and read everyone else's."""
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self._op_timeout_s * 2):
                try:
                    self.view = await self._sync()
                except ConnectionError:  # a pooled connection from before a Redis restart: once more, afresh
                    self.view = await self._sync()
        except Exception as exc:  # Redis gone or sick: carry on alone, loudly
            self.view = LONE
            self.sync_failures += 1
            self._set_mode("local", f"redis unreachable: {_describe(exc)}")
            return
        self._set_mode("shared", None)
        self._on_sync(self.view)

    async def _sync(self) -> ClusterView:
        now_ms = int(self._wall() * 1000)
        lease_ms = int(self._lease_s * 1000)
        replicas = self._key("replicas")
        local = self._local()
        await self._check_epoch(local)
        pipe = self._redis.pipeline(transaction=False)
        for worker, drained in self._pending_drains.items():
            (pipe.sadd if drained else pipe.srem)(self._key("drained"), worker)
        if local.ejections:  # an ejection lasts its own time, not this replica's lease
            pipe.hset(self._key("ejections"), mapping={w: repr(t) for w, t in local.ejections.items()})
        pipe.set(self._key("r", self.replica_id), local.encode(), px=lease_ms)
        pipe.zadd(replicas, {self.replica_id: now_ms + lease_ms})
        pipe.zremrangebyscore(replicas, "-inf", now_ms)
        pipe.zrange(replicas, 0, -1)
        pipe.hgetall(self._key("ejections"))
        pipe.smembers(self._key("drained"))
        *_, live, ejections, drained = await pipe.execute()
        self._pending_drains.clear()
        others = [r.decode() for r in live if r.decode() != self.replica_id]
        blobs = await self._redis.mget([self._key("r", r) for r in others]) if others else []
        now = self._wall()
        current = {w.decode(): float(t) for w, t in ejections.items() if float(t) > now}
        if len(current) < len(ejections):  # expired entries go; the hash holds at most the fleet
            stale = [w for w in ejections if w.decode() not in current]
            await self._redis.hdel(self._key("ejections"), *stale)
        return merge(blobs, current, frozenset(d.decode() for d in drained), len(others) + 1)

    async def _check_epoch(self, local: LocalState) -> None:
        """A Redis that restarted has lost the drained set, and every replica would read that as
        "undrained": the first replica to see the new Redis marks it, and each replica that sees a
        Redis other than the one it last synced with puts its own drains back."""
        key = self._key("epoch")
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, os.urandom(8).hex(), nx=True)
        pipe.get(key)
        _, epoch = await pipe.execute()
        if epoch != self._epoch:
            if self._epoch is not None and local.drained:
                await self._redis.sadd(self._key("drained"), *local.drained)
            self._epoch = epoch

    def _set_mode(self, mode: str, problem: str | None) -> None:
        changed = mode != self.mode
        self.mode, self.problem = mode, problem
        if changed:
            (log.warning if mode == "local" else log.info)("cluster.mode", mode=mode, problem=problem)
            for callback in self._on_mode:
                callback(mode)

    # -- calls that must be atomic or exact across replicas -----------------------------------
    async def _call(self, make: Callable[[Any], Any], default: Any) -> Any:
        """One bounded Redis call on the request path; `default` (this process alone) when Redis
        is not in use, already known to be down, or fails now."""
        if self._redis is None or self.mode != "shared":
            return default
        try:
            async with asyncio.timeout(self._op_timeout_s):
                return await make(self._redis)
        except Exception as exc:
            self.sync_failures += 1
            self.view = LONE
            self._set_mode("local", f"redis unreachable: {_describe(exc)}")
            return default

    async def session_worker(self, key: str | None) -> str | None:
        if not key:
            return None
        # GETEX: reading a live conversation keeps it for another TTL, so its turns need not write it again
        found = await self._call(lambda r: r.getex(self._key("s", key), ex=int(self._session_ttl_s)), None)
        return found.decode() if found else None

    async def remember_session(self, key: str | None, worker: str) -> None:
        if key:
            await self._call(lambda r: r.set(self._key("s", key), worker, ex=int(self._session_ttl_s)), None)

    async def claim_load(self, model: str, worker: str, ttl_s: float) -> str:
        """Single flight for a cold load: the worker that loads `model` now, ours if no other replica
        got there first. Model names here are ones the fleet has (the router refused the rest)."""
        key = self._key("load", model)

        async def claim(r: Any) -> str:
            pipe = r.pipeline(transaction=False)
            pipe.set(key, worker, nx=True, px=max(1, int(ttl_s * 1000)))
            pipe.get(key)
            _, holder = await pipe.execute()
            return holder.decode() if holder else worker

        return await self._call(claim, worker)

    async def release_load(self, model: str, worker: str) -> None:
        """The load is done (or failed): the next cold placement decides afresh."""
        script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
        await self._call(lambda r: r.eval(script, 1, self._key("load", model), worker), None)

    async def publish_ejection(self, worker: str, until_wall: float) -> None:
        await self._call(lambda r: r.hset(self._key("ejections"), worker, repr(until_wall)), None)

    async def publish_drain(self, worker: str, drained: bool) -> None:
        """An operator's drain or undrain, for every replica; kept and sent on the next good sync
        when Redis is out of reach now (else that sync's fleet-wide set would undo it here)."""
        if self._url is None:
            return
        key = self._key("drained")
        self._pending_drains[worker] = drained
        done = await self._call(lambda r: (r.sadd if drained else r.srem)(key, worker), False)
        if done is not False:
            self._pending_drains.pop(worker, None)

    def later(self, call: Any) -> None:
        """Run a publishing call without making the request wait for it (a conversation's worker)."""
        if self._redis is None or self.mode != "shared":
            call.close()
            return
        task = asyncio.ensure_future(call)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def enter(self, client: str, limit: int) -> int | None:
        """Take one of `client`'s concurrent places fleet-wide: the new total, -total when refused,
        None when Redis is not in use (the caller counts locally)."""
        now_ms = int(self._wall() * 1000)
        ttl_ms = int(max(self._lease_s * 20, 60) * 1000)
        keys = (self._key("cc", client), self._key("replicas"))
        return await self._call(lambda r: r.eval(_ENTER, 2, *keys, self.replica_id, limit, now_ms, ttl_ms), None)

    async def leave(self, client: str) -> None:
        await self._call(lambda r: r.hincrby(self._key("cc", client), self.replica_id, -1), None)

    async def rate(self, client: str, limit: int) -> float | None:
        """One request against `client`'s per-minute budget fleet-wide: 0 when admitted, else the
        seconds until a place frees; None when Redis is not in use (the caller counts locally)."""
        now_ms = int(self._wall() * 1000)
        member = f"{self.replica_id}:{time.monotonic_ns()}"
        found = await self._call(lambda r: r.eval(_RATE, 1, self._key("rpm", client), now_ms, limit, member), None)
        if found is None:
            return None
        admitted, oldest_ms = int(found[0]), int(found[1])
        return 0.0 if admitted else max(1.0, (oldest_ms + 60000 - now_ms) / 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
