"""Helpers the benchmarks under tests/perf share: free loopback ports, processes that are always
killed on exit (Ctrl-C and errors included), waiting for an address to answer, percentiles.

Benchmark plumbing only: no figures, no gateway internals.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank below), None for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def wait_http(url: str, seconds: float = 30.0, proc: subprocess.Popen | None = None, ready: bool = False) -> None:
    """Until `url` answers anything HTTP (with `ready`, a 2xx: /health says ready); fails at once
    when `proc` has exited."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            if not ready:
                return  # it answered, with a status we do not care about here
            time.sleep(0.1)
        except OSError:  # not up yet
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


class Procs:
    """Every process a benchmark starts, each in its own session with its output in a log file;
    `stop()` kills them all (use it in `finally`), and SIGTERM/SIGHUP are turned into an exception
    so that `finally` runs for them as it does for Ctrl-C."""

    def __init__(self, prefix: str = "bench-") -> None:
        self.procs: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_interrupt)

    def python(self, args: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        """`python -m ...` with this interpreter, so the benchmark's environment is the one used."""
        return self.start([sys.executable, *args], name, env)

    def start(self, args: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)
        log.close()  # the child holds its own copy
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process and its children (each process leads its own session)."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop(self, keep_logs: bool = False) -> None:
        for proc in self.procs:
            self.kill(proc)
        if not keep_logs:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
