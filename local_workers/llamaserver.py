"""Starting real llama-server processes (tests and the demo): find the binary, pick a port,
wait until ready, stop it. The binary comes from BEACON_LLAMA_SERVER or the cache that
`.ci/build-llama-server` fills; None when neither has one. A server that fails to get ready, or
whose start is cancelled, is killed and reaped before the error leaves start_server: no caller
is left holding a process it never got.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp

VERSION = os.environ.get("LLAMA_CPP_PYTHON_VERSION", "0.3.36")


def binary() -> Path | None:
    if env := os.environ.get("BEACON_LLAMA_SERVER"):
        return Path(env) if Path(env).is_file() else None
    root = os.environ.get("BEACON_LLAMA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "beacon-gateway")
    path = Path(root) / f"llama-server-{VERSION}" / "bin" / "llama-server"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def close(self) -> None:
        """Kill the process and wait until it is gone (reaped: no zombie, no port held)."""
        self.kill()
        await self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def start_server(exe: Path, log_dir: Path, *, model: Path | None = None, models_dir: Path | None = None,
                       alias: str | None = None, parallel: int = 2, ctx: int = 1024, models_max: int | None = None,
                       extra: tuple[str, ...] = (), prefix: tuple[str, ...] = (),
                       ready_s: float = 60.0) -> LlamaServer:
    """`prefix` goes before the binary (e.g. `taskset -c 4-7`); `extra` after the flags set here
    (a repeated flag such as `-t 4` overrides the one set here)."""
    port = free_port()
    args = [*prefix, str(exe), "--host", "127.0.0.1", "--port", str(port), "-c", str(ctx), "--parallel", str(parallel),
            "-t", "1", "--no-webui", *extra]
    if model is not None:
        args += ["-m", str(model)] + (["--alias", alias] if alias else [])
    if models_dir is not None:
        args += ["--models-dir", str(models_dir)] + (["--models-max", str(models_max)] if models_max else [])
    log_path = log_dir / f"llama-server-{port}.log"
    env = {**os.environ, "LD_LIBRARY_PATH": str(exe.parent)}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log, env=env)
    server = LlamaServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        await _wait_ready(server, ready_s)
    except BaseException:  # not ready, or the caller was cancelled (Ctrl-C) while it started
        await asyncio.shield(server.close())
        raise
    return server


async def _wait_ready(server: LlamaServer, seconds: float = 60.0) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.05)):
            if server.process.returncode is not None:
                raise RuntimeError(f"llama-server exited with {server.process.returncode}:\n{server.log_tail()}")
            try:
                async with http.get(server.url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"llama-server never became ready:\n{server.log_tail()}")
