"""The services one gateway process runs, bundled for handlers (stored under GATEWAY).

Built only by app.build_app; handlers read it from `request.app[GATEWAY]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from gateway.admission import Admission
from gateway.cluster import Cluster
from gateway.gpu import GpuWatch
from gateway.inflight import InFlight
from gateway.metrics import Metrics
from gateway.plan import Load
from gateway.probes import Prober
from gateway.proxy import Proxy
from gateway.reload import Reloader
from gateway.settings import Settings
from gateway.state import SnapshotHolder
from gateway.warmer import Warmer


@dataclass
class Gateway:
    settings: Settings
    holder: SnapshotHolder
    inflight: InFlight
    metrics: Metrics
    session: aiohttp.ClientSession
    proxy: Proxy
    prober: Prober
    admission: Admission
    warmer: Warmer
    gpus: GpuWatch
    clock: Callable[[], float]  # the routing clock (claims, sessions, health); latency is outcome.timer
    reloader: Reloader
    cluster: Cluster  # what replicas share through Redis; a lone process (no BEACON_REDIS_URL) shares nothing
    load: Load  # what routing reads: inflight itself, or it plus the other replicas' traffic


GATEWAY = web.AppKey("gateway", Gateway)
