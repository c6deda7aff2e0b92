"""Several real gateway replicas in front of one simulated fleet, sharing state through a real
redis-server. Replicas run their control loops one step at a time (probe, cluster sync), as the
single-gateway fixture does, so a test says exactly when a replica has seen the others."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest

from gateway.app import build_app
from gateway.config import parse_config
from gateway.context import GATEWAY, Gateway
from gateway.settings import Settings
from local_workers.sim import SimWorker, build_sim_app, parse_models
from tests.conftest import GIB, WorkerSpec, worker_toml


@dataclass
class Replicas:
    urls: list[str]
    gateways: list[Gateway]
    workers: dict[str, SimWorker]
    http: aiohttp.ClientSession
    config_text: str = ""

    async def sync(self) -> None:
        """Every replica publishes, then every replica reads: all see each other's state now."""
        for gw in self.gateways:
            await gw.cluster.step()
        for gw in self.gateways:
            await gw.cluster.step()

    async def probe(self) -> None:
        for gw in self.gateways:
            await gw.prober.step()


@pytest.fixture
async def start_replicas(aiohttp_server):
    sessions: list[aiohttp.ClientSession] = []

    async def start(count: int, redis_url: str | None, *specs: WorkerSpec, config_extra: str = "",
                    lease_s: float = 3.0) -> Replicas:
        workers, tomls = {}, []
        for spec in specs:
            worker = SimWorker(name=spec.name, models=parse_models(spec.models), tier=spec.tier,
                               vram_bytes=int(spec.vram_gib * GIB), tokens_per_s=spec.tokens_per_s,
                               load_s_per_gib=spec.load_s_per_gib, **spec.sim_options)
            server = await aiohttp_server(build_sim_app(worker))
            workers[spec.name] = worker
            tomls.append(worker_toml(spec, str(server.make_url("")).rstrip("/")))
        text = "\n".join(tomls) + "\n" + config_extra
        config = parse_config(text.encode())
        urls, gateways = [], []
        for _ in range(count):
            settings = Settings(redis_url=redis_url, redis_lease_s=lease_s)
            app = build_app(settings, config, run_loops=False)
            server = await aiohttp_server(app)
            urls.append(str(server.make_url("")).rstrip("/"))
            gateways.append(app[GATEWAY])
        http = aiohttp.ClientSession()
        sessions.append(http)
        replicas = Replicas(urls, gateways, workers, http, text)
        await replicas.probe()
        await replicas.sync()
        return replicas

    yield start
    for http in sessions:
        await http.close()
