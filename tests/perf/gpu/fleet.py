"""The GPU benchmark's processes: the GGUF models it needs, the llama-server workers (GPU and CPU)
and the gateway in front, pinned to cores with taskset where it exists; started and stopped here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.perf.gpu.plan import ADMIN_TOKEN, MODEL_1B, MODEL_3B, Profile, WorkerSpec, gateway_config

ROOT = Path(__file__).resolve().parents[3]  # the gateway runs from the repository root

def _taskset(cpus: str | None) -> tuple[str, ...]:
    return ("taskset", "-c", cpus) if cpus and shutil.which("taskset") else ()


def gpu_flags(p: Profile) -> tuple[str, ...]:
    """-ngl and --threads-http for a GPU worker (-ngl 0 in the CPU smoke run). llama-server keeps
    --threads-http threads; past them it serves a connection on a thread that exits after one
    request and closes it, so a client that reuses its keep-alive connections (the gateway, this
    bench) sees "Server disconnected". Enough fixed threads for every connection."""
    http_threads = ("--threads-http", str(4 * max(p.gpu_parallel, p.cap_concurrency) + 32))
    return ("-ngl", "99" if p.gpu else "0", *http_threads)


async def make_models(p: Profile, folder: Path) -> dict[str, Path]:
    from local_workers.tinygguf import make_shaped_llama, make_tiny_llama

    folder.mkdir(parents=True, exist_ok=True)
    paths = {MODEL_1B: folder / "bench-1b.gguf", MODEL_3B: folder / "bench-3b.gguf"}
    for model, path in paths.items():
        if path.is_file() and path.stat().st_size > 0:
            continue  # device_run.sh wrote them while llama-server built
        if p.gpu:
            shape = "llama-3.2-1b" if model == MODEL_1B else "llama-3.2-3b"
            await asyncio.to_thread(make_shaped_llama, path, shape, name=model)
        else:
            await asyncio.to_thread(make_tiny_llama, path, seed=1 if model == MODEL_1B else 2, name=model)
    return paths


class Fleet:
    """The llama-server workers and the gateway process."""

    def __init__(self, p: Profile, exe: Path, models: dict[str, Path], tmp: Path) -> None:
        self.p, self.exe, self.models, self.tmp = p, exe, models, tmp
        self.servers: dict = {}
        self.specs: list[WorkerSpec] = []
        self.gateway: subprocess.Popen | None = None
        self.gateway_url = ""
        self.config_path = tmp / "gateway.toml"

    async def start_workers(self, plan: list[tuple] | None = None) -> None:
        """`plan`: (name, tier, model, extra flags, cores, slots, context) rows; default: S6/S4/S5's four."""
        from local_workers.llamaserver import start_server

        p, gi = self.p, (0 if self.p.gpu else None)
        http_threads = gpu_flags(p)[2:]
        ngl = gpu_flags(p)
        plan = plan or [("gpu-a", "gpu", MODEL_1B, ngl + ("-t", "2"), "4,5", p.gpu_parallel, p.gpu_ctx),
                ("gpu-b", "gpu", MODEL_1B, ngl + ("-t", "2"), "6,7", p.gpu_parallel, p.gpu_ctx),
                ("gpu-c", "gpu", MODEL_3B, ngl + ("-t", "2"), "8,9", p.gpu_parallel, p.gpu_ctx),
                ("cpu-a", "cpu", MODEL_1B, ("-ngl", "0", "-t", str(p.cpu_threads), *http_threads), "10-13",
                 p.cpu_parallel, p.cpu_ctx)]
        started = await asyncio.gather(*(
            start_server(self.exe, self.tmp, model=self.models[model], alias=model, parallel=parallel, ctx=ctx,
                         extra=extra, prefix=_taskset(cpus if p.gpu else None), ready_s=180)
            for _, _, model, extra, cpus, parallel, ctx in plan), return_exceptions=True)
        for (name, tier, model, *_), server in zip(plan, started, strict=True):
            if isinstance(server, BaseException):
                raise RuntimeError(f"{name} did not start: {server}")
            self.servers[name] = server
            self.specs.append(WorkerSpec(name, server.url, tier, model, gi if tier == "gpu" else None))

    def start_gateway(self, affinity: bool = True, processes: int = 1, cpus: str = "0,1") -> None:
        """`processes` > 1: `serve --processes N` (a supervisor, N gateways on one port and the private
        redis-server it starts: BEACON_REDIS_URL is dropped from the environment so it does)."""
        from local_workers.llamaserver import free_port

        self.config_path.write_text(gateway_config(self.specs, affinity=affinity))
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "BEACON_ADMIN_TOKEN": ADMIN_TOKEN, "BEACON_LOG_FORMAT": "json",
               "BEACON_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
        env.pop("BEACON_REDIS_URL", None)
        many = ("--processes", str(processes)) if processes > 1 else ()
        log = open(self.tmp / "gateway.log", "ab")  # noqa: SIM115 - the child keeps its copy
        self.gateway = subprocess.Popen(
            [*_taskset(cpus), sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path),
             "--listen", f"127.0.0.1:{port}", *many], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()

    async def health(self, http) -> dict:
        async with http.get(self.gateway_url + "/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            return await resp.json()

    async def wait_gateway(self, http, seconds: float = 30.0) -> dict:
        """Until the gateway answers and sees every running worker healthy."""
        end, body = time.monotonic() + seconds, {}
        while time.monotonic() < end:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.gateway.returncode}:\n{self.log_tail('gateway.log')}")
            try:
                body = await self.health(http)
                live = {n for n, s in self.servers.items() if s.process.returncode is None}
                states = {w["name"]: w["state"] for w in body.get("workers", [])}
                if live and all(states.get(n) == "healthy" for n in live):
                    return body
            except Exception:  # noqa: BLE001 - not up yet
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway never saw the workers healthy: {body}\n{self.log_tail('gateway.log')}")

    async def admin(self, http, path: str) -> dict:
        async with http.post(self.gateway_url + path, json={},
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            return {"status": resp.status, "body": await resp.json(content_type=None)}

    def url(self, name: str) -> str:
        return self.servers[name].url

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def stop_gateway(self, grace_s: float = 0.0) -> None:
        """SIGTERM first when `grace_s` (a supervisor then stops its gateways and its redis-server and
        removes its folder), SIGKILL of the whole process group after it."""
        if self.gateway is None:
            return
        if grace_s and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            end = time.monotonic() + grace_s
            while self.gateway.poll() is None and time.monotonic() < end:
                await asyncio.sleep(0.1)
        try:
            os.killpg(self.gateway.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.gateway.wait()
        self.gateway = None

    async def stop(self) -> None:
        await self.stop_gateway()
        for server in self.servers.values():
            server.kill()
            await server.process.wait()
