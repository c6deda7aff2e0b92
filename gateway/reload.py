"""Config reload: on SIGHUP, on POST /admin/reload and when the file changes (polled).

A valid file swaps in whole (state.with_config): requests in flight finish on the snapshot
they read; a removed worker gets no new requests and is listed as draining until its last
request ends; an added worker takes traffic after its first good probe and a warmer pass.
An invalid file changes nothing: every error is logged with its key path and counted.
A config that still uses an old key name gets one warning per such key, at start and on every
swap (config_moves.py says where each went).
Decides nothing about routing; reads the file only here and in serve's start-up.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from gateway import state
from gateway.config import ConfigError, RoutingConfig, WorkerConfig, load_config
from gateway.inflight import InFlight
from gateway.metrics import Metrics
from gateway.state import SnapshotHolder

log = structlog.get_logger("gateway.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    result: str  # ok | unchanged | failed
    version: str
    source: str
    errors: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"result": self.result, "version": self.version, "source": self.source, "errors": list(self.errors),
                "added": list(self.added), "removed": list(self.removed), "changed": list(self.changed)}


@dataclass
class Reloader:
    holder: SnapshotHolder
    path: str
    inflight: InFlight
    metrics: Metrics
    clock: Callable[[], float]
    after_swap: Callable[[set[str]], Awaitable[None]]  # the added workers: probe and warm them now
    retired: dict[str, WorkerConfig] = field(default_factory=dict)
    _seen: tuple[int, int] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._seen = _fingerprint(self.path)
        warn_old_keys(self.holder.current.config, self.path)  # the config this process starts with

    async def reload(self, source: str) -> ReloadResult:
        """Read the file now and swap it in when valid. Concurrent calls run one after another."""
        async with self._lock:
            self._seen = _fingerprint(self.path)
            old = self.holder.current.config
            try:
                new = await asyncio.to_thread(load_config, self.path)
            except ConfigError as exc:
                return self._refused(old, source, exc.errors)
            if new.version == old.version:
                self.metrics.config_reloads.labels(result="unchanged").inc()
                return ReloadResult("unchanged", old.version, source)
            result = self._swap(old, new, source)
        if result.added:
            await self.after_swap(set(result.added))
        return result

    async def watch_step(self) -> None:
        """One poll of the file: reload when its size or modification time moved."""
        if self.holder.current.config.server.config_poll_s <= 0:
            return
        seen = _fingerprint(self.path)
        if seen is not None and seen != self._seen:
            await self.reload("file change")

    def draining(self) -> dict[str, int]:
        """Workers a reload removed that still have requests in flight, with their counts."""
        for name in [n for n in self.retired if not self.inflight.get(n) and n not in self.holder.current.workers]:
            del self.retired[name]
        return {name: self.inflight.get(name) for name in self.retired}

    def _swap(self, old: RoutingConfig, new: RoutingConfig, source: str) -> ReloadResult:
        before = {w.name: w for w in old.workers}
        after = {w.name: w for w in new.workers}
        added = tuple(n for n in after if n not in before or not state.same_worker(before[n], after[n]))
        removed = tuple(n for n in before if n not in after)
        changed = tuple(n for n in after if n in before and n not in added and before[n] != after[n])
        for name in removed:
            self.retired[name] = before[name]
        self.holder.update(lambda s: state.with_config(s, new, wall_now=time.time(), now=self.clock()))
        self.metrics.config_reloads.labels(result="ok").inc()
        warn_old_keys(new, self.path)
        log.info("config.reloaded", source=source, version=new.version, previous=old.version, added=list(added),
                 removed=list(removed), changed=list(changed))
        return ReloadResult("ok", new.version, source, (), added, removed, changed)

    def _refused(self, old: RoutingConfig, source: str, errors: list[str]) -> ReloadResult:
        self.metrics.config_reloads.labels(result="failed").inc()
        for line in errors:
            log.error("config.invalid", path=self.path, error=line)
        log.error("config.reload_refused", source=source, path=self.path, errors=len(errors), kept=old.version)
        return ReloadResult("failed", old.version, source, tuple(errors))


def warn_old_keys(config: RoutingConfig, path: str) -> None:
    for line in config.notices:
        log.warning("config.old_key", path=path, version=config.version, notice=line)


def _fingerprint(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
