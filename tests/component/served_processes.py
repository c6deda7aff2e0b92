"""`beacon-gateway serve --processes N` as a real command, for the scenario tests: started in a
process group of its own with a TMPDIR of its own and its log in a file, its port asked on fresh
connections (SO_REUSEPORT spreads connections, not requests), and a check that it left no
process (its group, and its redis-server, which runs in a group of its own) and no file behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.log = tmp_path / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.seen: set[int] = set()  # every process the supervisor started, redis-server included
        self.token: str | None = None  # the admin token, once one is set: /health's full report takes it

    async def start(self, config: Path, *args: str, processes: int = 2, env: dict | None = None,
                    listen: str | None = None) -> asyncio.subprocess.Process:
        base = {k: v for k, v in os.environ.items() if k != "BEACON_REDIS_URL"}
        with open(self.log, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *CLI, "serve", "--config", str(config), "--listen", listen or f"127.0.0.1:{self.port}",
                "--processes", str(processes), *args, cwd=ROOT, start_new_session=True,
                stdout=log, stderr=log,
                env={**base, "TMPDIR": str(self.tmpdir), "BEACON_LOG_FORMAT": "json", **(env or {})})
        return self.proc

    async def health(self) -> dict:
        """/health on a connection of its own, so SO_REUSEPORT picks a process afresh."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            async with http.get(self.url + "/health", headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return await resp.json()

    async def processes(self, asks: int = 40) -> dict[int, int]:
        """index -> pid of the processes that answered `asks` fresh connections."""
        found = {}
        for _ in range(asks):
            process = (await self.health())["process"]
            found[process["index"]] = process["pid"]
        return found

    async def until_serving(self, count: int = 2, seconds: float = 60) -> dict[int, int]:
        """Until every one of `count` processes has answered on the port; index -> pid."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            assert self.proc.returncode is None, f"serve exited with {self.proc.returncode}: {self.lines()[-5:]}"
            try:
                found = await self.processes(8)
                if len(found) == count and self.supervising():
                    self.seen.update(children_of(self.proc.pid))
                    return found
            except (aiohttp.ClientError, OSError, KeyError):
                pass
            await asyncio.sleep(0.1)  # a real process starting: nothing to step
        raise AssertionError(f"not every process answered within {seconds} s: {self.lines()[-5:]}")

    def supervising(self) -> bool:
        """The supervisor said it runs (from then on it forwards SIGHUP and restarts processes)."""
        return any(line.get("event") == "gateway.processes_listening" for line in self.lines())

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"text": line})
        return out

    async def finish(self, seconds: float = 30) -> int:
        return await asyncio.wait_for(self.proc.wait(), seconds)

    async def assert_nothing_left(self) -> None:
        pids = {*self.seen, *children_of(self.proc.pid)} if self.proc.returncode is None else set(self.seen)
        for _ in range(100):  # the OS needs a moment to reap; nothing to do with the control loop
            try:
                os.killpg(self.proc.pid, 0)
                group = True
            except ProcessLookupError:
                group = False
            left = [pid for pid in pids if alive(pid)]
            if not group and not left:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"still running: group {group}, processes {left}")
        assert list(self.tmpdir.iterdir()) == [], "serve left files in its TMPDIR"

    async def close(self) -> None:
        """Whatever a failed test left running: killed, and the command reaped."""
        for pid in [self.proc.pid, *self.seen] if self.proc else []:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc is not None:
            await self.proc.wait()
