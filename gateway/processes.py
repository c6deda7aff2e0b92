"""`beacon-gateway serve --processes N`: N gateway processes behind one port, one supervisor.

The supervisor serves no request. After serve's own checks (settings, config) it refuses what
cannot work (port 0: each process would pick its own; no Redis to share through), checks the
address, makes a run folder (0700), starts a private redis-server there on a unix socket when
BEACON_REDIS_URL is unset, then the N gateways (`python -m gateway serve`, each told its index
and the folder through BEACON_PROCESS_*, gateway/siblings.py) sharing the port with SO_REUSEPORT.

While they run it forwards SIGHUP (reload) to the gateways and restarts any process that dies,
after a delay that doubles while it keeps dying young (logged each time). SIGINT or SIGTERM stop
the gateways (they finish their requests), then Redis, and remove the folder; a stop signal
during start-up does the same. Each child runs in a process group of its own, so a signal to
the supervisor's group reaches the supervisor alone. If the supervisor dies (kill -9, also of its
whole group), the kernel signals its children (parent-death signal): the gateways, which also
watch their parent, stop and remove the folder; the private Redis is killed.
Makes no routing decision and holds no gateway state.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gateway import listen, runner
from gateway.settings import Settings
from gateway.siblings import Role

log = structlog.get_logger("gateway.processes")

MAX_PROCESSES = 128
START_S = 60.0  # a process's start-up: imports, its first probe round, binding
STOP_S = 15.0  # gateways finish their requests within their shutdown timeout (5 s) and stop their loops
FIRST_DELAY_S, MAX_DELAY_S = 0.25, 30.0  # restart delay: doubles while a process keeps dying young
STEADY_S = 30.0  # a process that ran this long starts the delay afresh
SOCKET_PATH_MAX = 107  # sun_path, less its final NUL


class StartFailed(Exception):
    """A process did not start: exit with `code` (a gateway's own: 1 cannot listen, 2 bad config)."""

    def __init__(self, text: str, code: int = 1) -> None:
        super().__init__(text)
        self.code = code


def supervise(settings: Settings, count: int) -> int:
    host, port = settings.host_port
    if port == 0:
        print(f"--processes {count} needs a fixed port: with port 0 each process would listen on one of its own "
              f"(e.g. --listen {listen.format_address(host, 11434)})", file=sys.stderr)
        return 2
    redis = None
    if settings.redis_url is None:
        redis = shutil.which("redis-server")
        if redis is None:
            print(f"--processes {count} shares state through Redis: install redis-server (Debian: apt-get install "
                  "redis-server) or set BEACON_REDIS_URL to a Redis the processes can share", file=sys.stderr)
            return 2
    try:
        listen.check_listen(host, port)  # another program on the port: SO_REUSEPORT would not say so
        runner.run(lambda: Supervisor(settings, count, redis).run())
    except listen.CannotListen as exc:
        log.error("gateway.cannot_listen", message=str(exc))
        return 1
    except StartFailed as exc:
        log.error("gateway.processes_failed", message=str(exc))
        return exc.code
    return 0


@dataclass
class Child:
    """One supervised process: how to start it, how to tell it is up, and its current run."""

    name: str
    argv: list[str]
    env: dict[str, str]
    death_signal: int  # what the kernel sends it when the supervisor dies
    answers: Callable[[], Awaitable[bool]]
    quiet: bool = False  # redis-server: its banner and notices are not JSON log lines
    proc: subprocess.Popen | None = None
    started: float = 0.0
    delay: float = FIRST_DELAY_S

    def spawn(self) -> None:
        # Synchronous on purpose: no await between fork and keeping the handle, so a stop that
        # comes meanwhile can never lose a process. A process group of its own: a signal to the
        # supervisor's group (Ctrl-C, or a harness's SIGKILL of it) reaches the supervisor alone,
        # which stops the others in order; killed with it, they could not clean up after it.
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL if self.quiet else None,
                                     preexec_fn=_dies_with(os.getpid(), self.death_signal), process_group=0)
        self.started = time.monotonic()

    @property
    def process(self) -> subprocess.Popen:
        """The current run, once spawn() made one."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.proc


class Supervisor:
    def __init__(self, settings: Settings, count: int, redis_binary: str | None) -> None:
        self.settings, self.count, self.redis_binary = settings, count, redis_binary
        self.redis: Child | None = None
        self.gateways: list[Child] = []
        self._watchers: list[asyncio.Task] = []

    async def run(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="beacon-"))
        try:
            await self._start(folder)
            log.info("gateway.processes_listening", address=f"http://{self.settings.listen}", processes=self.count,
                     pids=[c.process.pid for c in self.gateways], redis="private" if self.redis else "BEACON_REDIS_URL")
            self._watchers = [asyncio.ensure_future(self._keep_running(c)) for c in self._children()]
            await runner.until_signalled(on_hangup=self._hangup)
        finally:
            log.info("gateway.processes_stopping", processes=self.count)
            for watcher in self._watchers:
                watcher.cancel()
            await self._stop()
            shutil.rmtree(folder, ignore_errors=True)

    def _children(self) -> list[Child]:
        return [*([self.redis] if self.redis else []), *self.gateways]

    async def _start(self, folder: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_PROCESS_")}
        roles = [Role(i, self.count, folder, os.getpid()) for i in range(self.count)]
        if len(str(roles[-1].redis_socket)) > SOCKET_PATH_MAX - 8:
            raise StartFailed(f"the run folder {folder} is too deep for unix sockets: set TMPDIR to a shorter path")
        if self.redis_binary:
            self.redis = _redis_child(self.redis_binary, folder, roles[0].redis_socket, env)
            self.redis.spawn()
            await _until_up(self.redis)
            env["BEACON_REDIS_URL"] = f"unix://{roles[0].redis_socket}"
        argv = [sys.executable, "-m", "gateway", "serve", "--config", self.settings.config,
                "--listen", self.settings.listen]
        for role in roles:
            socket_path = role.socket(role.index)
            child = Child(f"process {role.index}", argv, {**env, **role.env()}, signal.SIGTERM,
                          functools.partial(_http_answers, socket_path))
            self.gateways.append(child)
            child.spawn()  # all at once: they start in parallel
        for child in self.gateways:
            await _until_up(child)

    async def _hangup(self) -> None:
        log.info("gateway.processes_reload", processes=self.count, source="SIGHUP")
        for child in self.gateways:
            _send(child, signal.SIGHUP)

    async def _keep_running(self, child: Child) -> None:
        """Restart `child` whenever it exits, until the supervisor stops (then this task is cancelled)."""
        while True:
            code = await _exited(child.process)
            await asyncio.sleep(0.05)  # a Ctrl-C reaches the whole group: let ours arrive before judging
            if runner.stop_requested():
                return
            ran = time.monotonic() - child.started
            if ran >= STEADY_S:
                child.delay = FIRST_DELAY_S
            delay, child.delay = child.delay, min(child.delay * 2, MAX_DELAY_S)
            log.warning("process.exited", child=child.name, pid=child.process.pid, exit=_described(code),
                        ran_s=round(ran, 1), restart_in_s=delay)
            await asyncio.sleep(delay)
            try:
                child.spawn()
            except OSError as exc:  # no fork now (out of memory or processes): the next try waits longer
                log.error("process.cannot_start", child=child.name, error=str(exc))
                child.started = time.monotonic()  # a failure young: the delay keeps doubling
                continue
            log.info("process.restarted", child=child.name, pid=child.process.pid)

    async def _stop(self) -> None:
        """Gateways first (they finish their requests, and leave Redis), then Redis."""
        await _stop_all(self.gateways, STOP_S)
        if self.redis is not None:
            await _stop_all([self.redis], 5.0)


def _redis_child(binary: str, folder: Path, socket_path: Path, env: dict[str, str]) -> Child:
    argv = [binary, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700", "--save", "",
            "--appendonly", "no", "--dir", str(folder), "--daemonize", "no", "--loglevel", "warning"]
    # SIGKILL: it holds nothing worth saving, and the gateways fall back to local state without it
    return Child("redis-server", argv, env, signal.SIGKILL, lambda: _redis_answers(socket_path), quiet=True)


async def _until_up(child: Child) -> None:
    end = time.monotonic() + START_S
    while time.monotonic() < end:
        code = child.process.poll()
        if code is not None:
            raise StartFailed(f"{child.name} exited with {_described(code)} while starting", code if code > 0 else 1)
        if await child.answers():
            return
        await asyncio.sleep(0.05)
    raise StartFailed(f"{child.name} did not start within {START_S:.0f} s")


async def _stop_all(children: list[Child], seconds: float) -> None:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
        _send(child, signal.SIGTERM)
    waits = [asyncio.ensure_future(_exited(c.process)) for c in running]
    if waits:
        _, late = await asyncio.wait(waits, timeout=seconds)
        for wait in late:
            wait.cancel()
    for child in running:
        if child.process.poll() is None:
            log.warning("process.killed", child=child.name, pid=child.process.pid,
                        reason=f"still running after {seconds:.0f} s")
            _send(child, signal.SIGKILL)
            child.process.wait()


def _send(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(sig)


async def _exited(proc: subprocess.Popen) -> int:
    """Wait for `proc` to exit without a thread or a poll: its pidfd turns readable then."""
    if proc.poll() is not None:  # reaped already: its pid may belong to another process by now
        return proc.returncode
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (an old kernel, not Linux): poll instead
        while proc.poll() is None:
            await asyncio.sleep(0.1)
        return proc.returncode
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return proc.wait()


async def _http_answers(path: Path) -> bool:
    return await _answers(path, b"GET /health/live HTTP/1.1\r\nHost: process\r\nConnection: close\r\n\r\n",
                          b"HTTP/1.1 200")


async def _redis_answers(path: Path) -> bool:
    return await _answers(path, b"PING\r\n", b"+PONG")


async def _answers(path: Path, ask: bytes, expect: bytes) -> bool:
    try:
        async with asyncio.timeout(1.0):
            reader, writer = await asyncio.open_unix_connection(str(path))
            try:
                writer.write(ask)
                return (await reader.readline()).startswith(expect)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False


def _described(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"code {code}"


def _dies_with(supervisor: int, sig: int) -> Callable[[], None] | None:
    """A preexec_fn: the kernel sends `sig` to the child when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(1, int(sig))  # PR_SET_PDEATHSIG
        if os.getppid() != supervisor:  # it died before the line above: nobody will send it
            os.kill(os.getpid(), sig)

    return arm
