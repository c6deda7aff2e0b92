"""S2 of the hop benchmarks: paced streams relayed by each path, NDJSON (Ollama /api/chat) and SSE
(OpenAI /v1/chat/completions). Per path and concurrency: chunks relayed, proxy CPU per chunk
(from /proc/PID/stat), added time to first chunk and added inter-chunk delay p99 against the
direct run. Run from tests/perf/hop_bench.py, which starts and stops the processes.
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp

from tests.perf.hop_upstream import CHUNKS, MODEL
from tests.perf.procs import pct

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants (nginx and LiteLLM work in child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
        todo += children.get(current, [])
    return total


async def one_stream(http: aiohttp.ClientSession, url: str, sse: bool, out: dict) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True}
    started = time.perf_counter()
    last, chunks = None, 0
    async with http.post(url, json=body) as resp:
        async for line in resp.content:
            if not line.strip() or (sse and not line.startswith(b"data: {")):
                continue
            now = time.perf_counter()
            if last is None:
                out["ttfc"].append(now - started)
            else:
                out["gaps"].append(now - last)
            last, chunks = now, chunks + 1
    out["chunks"] += chunks


async def run_streams(url: str, sse: bool, concurrency: int, seconds: float) -> dict:
    out = {"ttfc": [], "gaps": [], "chunks": 0, "streams": 0}
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def client() -> None:
            while time.perf_counter() < deadline:
                await one_stream(http, url, sse, out)
                out["streams"] += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return out


def s2_streams(paths: dict[str, str], procs, concurrencies: tuple[int, ...], seconds: float) -> dict:
    """Streams need the paced upstream: restart every path in front of it."""
    from tests.perf.hop_bench import Procs, start_paths

    procs.stop()
    stream_procs = Procs()
    try:
        paths = start_paths(stream_procs, quick=True, streams=True)  # LiteLLM is left out: see README
        pids = _proxy_pids(stream_procs, paths)
        report = {}
        for fmt, sse in (("ndjson", False), ("sse", True)):
            for c in concurrencies:
                report[f"{fmt}-c{c}"] = _compare(paths, pids, sse, c, seconds)
                _print(f"{fmt}, {c} streams", report[f"{fmt}-c{c}"])
        return report
    finally:
        stream_procs.stop()


def _proxy_pids(procs, paths: dict[str, str]) -> dict[str, int]:
    """The process serving each path (taskset execs the program itself, so the pids are the same)."""
    out, live = {}, iter(procs.procs[1:])  # procs[0] is the upstream
    for name in paths:
        if name == "direct":
            continue
        out[name] = next(live).pid
    return out


def _compare(paths: dict[str, str], pids: dict[str, int], sse: bool, concurrency: int, seconds: float) -> dict:
    rows = {}
    for name, base in paths.items():
        if sse is False and name == "vllm-router":
            continue  # it speaks OpenAI's API only
        path = "/v1/chat/completions" if sse else "/api/chat"
        before = cpu_seconds(pids[name]) if name in pids else 0.0
        out = asyncio.run(run_streams(base + path, sse, concurrency, seconds))
        cpu = cpu_seconds(pids[name]) - before if name in pids else 0.0
        rows[name] = {"chunks_per_s": round(out["chunks"] / seconds), "streams": out["streams"],
                      "cpu_share": round(cpu / seconds, 3),
                      "cpu_us_per_chunk": round(1e6 * cpu / out["chunks"], 1) if out["chunks"] and cpu else None,
                      "ttfc_p50_ms": round(1000 * (pct(out["ttfc"], 0.5) or 0.0), 2),
                      "ttfc_p99_ms": round(1000 * (pct(out["ttfc"], 0.99) or 0.0), 2),
                      "gap_p99_ms": round(1000 * (pct(out["gaps"], 0.99) or 0.0), 2)}
    direct = rows["direct"]
    for row in rows.values():
        row["added_ttfc_p50_ms"] = round(row["ttfc_p50_ms"] - direct["ttfc_p50_ms"], 2)
        row["added_gap_p99_ms"] = round(row["gap_p99_ms"] - direct["gap_p99_ms"], 2)
    return rows


def _print(title: str, rows: dict) -> None:
    keys = ("chunks_per_s", "cpu_us_per_chunk", "added_ttfc_p50_ms", "gap_p99_ms", "added_gap_p99_ms")
    print(f"\nS2 {title}")
    print(f"{'path':<16}" + "".join(f"{k:>19}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<16}" + "".join(f"{row.get(k)!s:>19}" for k in keys))


__all__ = ["s2_streams", "CHUNKS"]
