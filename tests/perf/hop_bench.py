"""Side-by-side hop benchmarks (not tests): what one proxy hop adds, direct vs beacon-gateway vs
peers (nginx, LiteLLM proxy, vllm-router), all on loopback in one run.

S1 non-streamed: unloaded added latency (wrk -c1, interleaved rounds of every path), capacity
(best requests/s at p99 <= 10 ms over wrk -c 4..64), added p99 at a constant 1,000 req/s.
S2 streamed: paced streams (64 chunks, 5 ms apart) at 25-200 concurrent: proxy CPU per relayed
chunk, added time to first chunk and added inter-chunk delay p99, NDJSON and SSE.

The proxy under test is pinned to core 0, the upstream and the load generator to core 1
(`taskset`). Peers come from /opt/peers (a venv with litellm[proxy] and vllm-router) and
Debian's nginx and wrk; a missing peer is reported as missing, not faked.

    python -m tests.perf.hop_bench [--quick] [--json tests/perf/results/hop-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.perf import hop_upstream, procs
from tests.perf.procs import free_port, wait_http

PEERS = Path(os.environ.get("BEACON_PEERS", "/opt/peers/bin"))
MODEL = "m:latest"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in one short sentence please."}],
        "stream": False}


class Procs(procs.Procs):
    """procs.Procs, with each process pinned to a core (`taskset`) so the proxy under test has its own."""

    def __init__(self) -> None:
        super().__init__(prefix="hop-bench-")
        self.up_port = 0

    def start(self, args: list[str], core: int | None, env: dict | None = None) -> subprocess.Popen:  # type: ignore[override]
        pin = ["taskset", "-c", str(core)] if core is not None and shutil.which("taskset") else []
        return super().start(pin + args, f"{len(self.procs)}-{Path(args[0]).name}", env)


def nginx(procs: Procs, name: str, body: str, core: int) -> int:
    port = free_port()
    root = procs.tmp / name
    root.mkdir()
    (root / "nginx.conf").write_text(f"""daemon off; worker_processes 1; pid {root}/pid; error_log {root}/err crit;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {root}; proxy_temp_path {root};
  upstream up {{ server 127.0.0.1:{{UP}}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port}; {body} }} }}""".replace("{UP}", str(procs.up_port)))
    procs.start(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], core)
    wait_http(f"http://127.0.0.1:{port}/api/version")
    return port


def start_upstream(procs: Procs, streams: bool) -> str:
    """S1: nginx answering every call from memory (the cheapest possible worker, on core 1), so the
    figures are the proxy's; S2: a paced streaming worker in Python (tests/perf/hop_upstream.py)."""
    procs.up_port = free_port()
    if streams or not shutil.which("nginx"):
        procs.start([sys.executable, "-m", "tests.perf.hop_upstream", str(procs.up_port)], 1)
    else:
        root = procs.tmp / "mock"
        root.mkdir()
        (root / "nginx.conf").write_text(hop_upstream.nginx_mock(procs.up_port, root))
        procs.start(["nginx", "-c", str(root / "nginx.conf"), "-p", str(root)], 1)
    wait_http(f"http://127.0.0.1:{procs.up_port}/api/version")
    return f"http://127.0.0.1:{procs.up_port}"


def start_paths(procs: Procs, quick: bool, streams: bool = False) -> dict[str, str]:
    """The upstream, then every proxy in front of it: name -> base URL."""
    paths = {"direct": start_upstream(procs, streams)}
    config = procs.tmp / "beacon.toml"
    config.write_text(f'[[workers]]\nname = "up"\nurl = "http://127.0.0.1:{procs.up_port}"\nkind = "ollama"\n'
                      "max_inflight = 1024\n"  # the mock has no slot limit; Ollama's real one must be set or learned
                      "[health]\ninterval_s = 5\n")
    port = free_port()
    procs.start([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
                0, {"BEACON_LOG_FORMAT": "json"})
    wait_http(f"http://127.0.0.1:{port}/api/version")
    paths["beacon-gateway"] = f"http://127.0.0.1:{port}"
    if shutil.which("nginx"):
        body = ("location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; "
                "proxy_buffering off; }")
        paths["nginx"] = f"http://127.0.0.1:{nginx(procs, 'nginx', body, 0)}"
    if (PEERS / "vllm-router").exists():
        port = free_port()
        procs.start([str(PEERS / "vllm-router"), "--host", "127.0.0.1", "--port", str(port), "--worker-urls",
                     paths["direct"], "--policy", "round_robin", "--log-level", "error"], 0)
        wait_http(f"http://127.0.0.1:{port}/health")
        paths["vllm-router"] = f"http://127.0.0.1:{port}"
    if (PEERS / "litellm").exists() and not quick:
        port = free_port()
        cfg = procs.tmp / "litellm.yaml"
        cfg.write_text(f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: ollama_chat/{MODEL}\n"
                       f"      api_base: {paths['direct']}\nlitellm_settings:\n  set_verbose: false\n")
        procs.start([str(PEERS / "litellm"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                     "--num_workers", "1"], 0, {"LITELLM_LOG": "ERROR",  # loopback-only benchmark: no master key
                                            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"})
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", 120)
        paths["litellm"] = f"http://127.0.0.1:{port}"
    return paths


def front(name: str) -> tuple[str, dict]:
    """The request each path is asked: the Ollama API where it speaks it, else OpenAI's."""
    if name in ("vllm-router", "litellm"):
        return "/v1/chat/completions", {"model": MODEL, "messages": CHAT["messages"], "stream": False}
    return "/api/chat", CHAT


def wrk(base: str, name: str, conns: int, seconds: float, tmp: Path) -> dict:
    path, body = front(name)
    script = tmp / f"{name}.lua"
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      'done = function(summary, latency, requests)\n'
                      '  io.write(string.format("JSON {\\"rps\\": %f, \\"p50\\": %d, \\"p99\\": %d, \\"errors\\": %d}\\n",'
                      ' summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),'
                      ' summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))\n'
                      'end\n')
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "-s", str(script),
                          base + path], capture_output=True, text=True, timeout=seconds + 30).stdout
    line = next((x for x in out.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary for {name}: {out[-300:]}")
    data = json.loads(line[5:])
    return {"rps": round(data["rps"], 1), "p50_us": data["p50"], "p99_us": data["p99"], "errors": data["errors"]}


def s1_unloaded(paths: dict[str, str], rounds: int, seconds: float, tmp: Path) -> dict:
    samples: dict[str, list[dict]] = {name: [] for name in paths}
    for _ in range(rounds):  # interleaved, so drift on the shared machine hits every path alike
        for name, base in paths.items():
            samples[name].append(wrk(base, name, 1, seconds, tmp))
    out = {}
    for name, runs in samples.items():
        p50 = statistics.median(r["p50_us"] for r in runs)
        p99 = statistics.median(r["p99_us"] for r in runs)
        out[name] = {"p50_us": p50, "p99_us": p99, "rps_c1": statistics.median(r["rps"] for r in runs)}
    for name in out:
        out[name]["added_p50_us"] = out[name]["p50_us"] - out["direct"]["p50_us"]
        out[name]["added_p99_us"] = out[name]["p99_us"] - out["direct"]["p99_us"]
    return out


def s1_capacity(paths: dict[str, str], seconds: float, tmp: Path) -> dict:
    out = {}
    for name, base in paths.items():
        runs = {c: wrk(base, name, c, seconds, tmp) for c in (4, 8, 16, 32, 64)}
        within = [r["rps"] for r in runs.values() if r["p99_us"] <= 10_000 and not r["errors"]]
        out[name] = {"best_rps_p99_le_10ms": max(within) if within else 0.0, "by_concurrency": runs}
    return out


async def open_loop(base: str, name: str, rate: float, seconds: float) -> dict:
    path, body = front(name)
    latencies, errors = [], 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def one() -> None:
            nonlocal errors
            t = time.perf_counter()
            try:
                async with http.post(base + path, json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append(time.perf_counter() - t)

        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6  # noqa: E731
    return {"sent": n, "errors": errors, "p50_us": round(pick(0.5)), "p99_us": round(pick(0.99))}


def s1_constant_rate(paths: dict[str, str], rate: float, seconds: float) -> dict:
    out = {name: asyncio.run(open_loop(base, name, rate, seconds)) for name, base in paths.items()}
    for name in out:
        out[name]["added_p99_us"] = out[name]["p99_us"] - out["direct"]["p99_us"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, no LiteLLM (a smoke test of the bench)")
    parser.add_argument("--json", default="tests/perf/results/hop-bench.json")
    parser.add_argument("--skip-streams", action="store_true")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 5.0
    procs = Procs()
    started = time.time()
    try:
        paths = start_paths(procs, args.quick)
        report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "paths": list(paths),
                  "s1_unloaded": s1_unloaded(paths, 2 if args.quick else 3, seconds, procs.tmp)}
        print_table("S1 unloaded (wrk -c1)", report["s1_unloaded"], ("p50_us", "p99_us", "added_p50_us", "added_p99_us"))
        report["s1_capacity"] = s1_capacity(paths, seconds, procs.tmp)
        print_table("S1 capacity (best req/s with p99 <= 10 ms)", report["s1_capacity"], ("best_rps_p99_le_10ms",))
        report["s1_rate_1000"] = s1_constant_rate(paths, 1000.0, seconds)
        print_table("S1 constant 1,000 req/s", report["s1_rate_1000"], ("p50_us", "p99_us", "added_p99_us", "errors"))
        if not args.skip_streams:
            from tests.perf.hop_streams import s2_streams

            report["s2_streams"] = s2_streams(paths, procs, (25, 100) if args.quick else (25, 100, 200), seconds)
        report["wall_s"] = round(time.time() - started, 1)
    finally:
        procs.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json} in {report['wall_s']} s")
    return 0


def print_table(title: str, rows: dict, keys: tuple[str, ...]) -> None:
    print(f"\n{title}")
    print(f"{'path':<16}" + "".join(f"{k:>22}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<16}" + "".join(f"{row.get(k, '-')!s:>22}" for k in keys))


if __name__ == "__main__":
    sys.exit(main())
