"""Shared fixtures: a fleet of real simulated Ollama workers and the real gateway in front,
all on 127.0.0.1 ports. Nothing is mocked; tests switch a worker's behaviour while it runs
and drive the control loop one step at a time instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest

from gateway.app import build_app
from gateway.config import parse_config
from gateway.context import GATEWAY, Gateway
from gateway.settings import Settings
from local_workers.sim import SimWorker, build_sim_app, parse_models

GIB = 1024**3


@dataclass
class WorkerSpec:
    name: str
    models: str = "llama3.2:1b=1.3GiB"
    tier: str = "gpu"
    vram_gib: float = 24
    tokens_per_s: float = 2000.0
    load_s_per_gib: float = 0.01
    extra_toml: str = ""
    sim_options: dict = field(default_factory=dict)
    kind: str = "ollama"
    url: str | None = None  # a real server already running: no simulated worker is started


@dataclass
class Fleet:
    url: str
    gateway: Gateway
    workers: dict[str, SimWorker]
    worker_urls: dict[str, str]
    servers: dict
    http: aiohttp.ClientSession
    config_text: str = ""

    async def probe(self) -> None:
        """Run exactly one control-loop probe step."""
        await self.gateway.prober.step()

    async def stop_worker(self, name: str) -> None:
        await self.servers[name].close()

    def post(self, path: str, json: object = None, **kwargs):
        return self.http.post(self.url + path, json=json, **kwargs)

    def get(self, path: str, **kwargs):
        return self.http.get(self.url + path, **kwargs)


def worker_toml(spec: WorkerSpec, url: str) -> str:
    text = f'[[workers]]\nname = "{spec.name}"\nurl = "{url}"\nkind = "{spec.kind}"\ntier = "{spec.tier}"\n'
    return text + spec.extra_toml


@pytest.fixture
async def start_fleet(aiohttp_server) -> Callable[..., Awaitable[Fleet]]:
    sessions: list[aiohttp.ClientSession] = []

    async def start(*specs: WorkerSpec, config_extra: str = "", gpu_reader=None, admin_token: str | None = None,
                    config_path=None, clock=None, settings: dict | None = None) -> Fleet:
        """config_path: also write the config there and point the gateway's settings at it (reload tests)."""
        workers, servers, urls, tomls = {}, {}, {}, []
        for spec in specs:
            if spec.url:
                urls[spec.name] = spec.url
                tomls.append(worker_toml(spec, spec.url))
                continue
            worker = SimWorker(name=spec.name, models=parse_models(spec.models), tier=spec.tier,
                               vram_bytes=int(spec.vram_gib * GIB), tokens_per_s=spec.tokens_per_s,
                               load_s_per_gib=spec.load_s_per_gib, **spec.sim_options)
            server = await aiohttp_server(build_sim_app(worker))
            url = str(server.make_url("")).rstrip("/")
            workers[spec.name], servers[spec.name], urls[spec.name] = worker, server, url
            tomls.append(worker_toml(spec, url))
        text = "\n".join(tomls) + "\n" + config_extra
        config = parse_config(text.encode())
        settings = Settings(admin_token=admin_token, **({"config": str(config_path)} if config_path else {}),
                            **(settings or {}))
        if config_path:
            config_path.write_text(text)
        app = build_app(settings, config, run_loops=False, gpu_reader=gpu_reader,
                        **({"clock": clock} if clock else {}))
        server = await aiohttp_server(app)
        http = aiohttp.ClientSession()
        sessions.append(http)
        fleet = Fleet(str(server.make_url("")).rstrip("/"), app[GATEWAY], workers, urls, servers, http, text)
        await fleet.probe()
        return fleet

    yield start
    for http in sessions:
        await http.close()


@dataclass
class SimProcess:
    """A simulated worker in its own process, so tests can kill -9, SIGSTOP and restart it."""

    name: str
    port: int
    args: list[str]
    process: object = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SimProcess:
        import asyncio
        import sys

        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "local_workers.sim", "--port", str(self.port), "--name", self.name, *self.args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(self.url + "/"):
                        return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError(f"sim worker {self.name} did not start")

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)


@pytest.fixture
async def sim_processes():
    import signal
    import socket

    started: list[SimProcess] = []

    async def start(name: str, *args: str, port: int | None = None) -> SimProcess:
        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        proc = await SimProcess(name, port, list(args)).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.returncode is None:
            proc.signal(signal.SIGCONT)
            proc.kill()
            await proc.process.wait()


@pytest.fixture
def start_sim(aiohttp_client):
    """A simulated worker on a loopback port, fast unless told otherwise: (worker, test client)."""

    async def start(**options):
        if isinstance(options.get("models"), str):
            options["models"] = parse_models(options["models"])
        options.setdefault("load_s_per_gib", 0.005)
        options.setdefault("tokens_per_s", 100_000)
        worker = SimWorker(**options)
        return worker, await aiohttp_client(build_sim_app(worker))

    return start


@dataclass
class RedisServer:
    """A real redis-server on a loopback port, started by the test that needs shared state."""

    port: int
    process: object = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        import asyncio
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        self.process = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--protected-mode", "no", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return self
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def redis_server():
    """start() a real redis-server; stop() kills it (restart with start() on the same port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = RedisServer(port)
    await server.start()
    yield server
    await server.stop()
