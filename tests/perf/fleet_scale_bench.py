"""Fleet-scale benchmark (not a test): what routing and the control loop cost at N = 4, 50, 300
and 1,000 workers. Prints a table, writes JSON.

    python -m tests.perf.fleet_scale_bench [--sizes 4,50,300,1000] [--models 50] [--measure-s 10]
                                           [--json out/fleet-scale-bench.json]

Per N:
- routing: the real `router.choose`, median and p99 in microseconds (tests/perf/fleet_routing.py);
- one process serving N simulated workers on N loopback ports (`beacon-gateway sim-worker
  --workers N`: 20 of the M models on disk each, every 10th worker with its first one loaded)
  and the real gateway process in front, at the default probe interval:
  - gateway CPU per probe round and snapshot swaps per round, the fleet idle;
  - added latency p50/p99 of a non-streamed chat through the gateway, against the same
    requests straight to a worker holding the model, interleaved;
  - gateway CPU per call of /health, /status, /metrics, /api/tags and /v1/models;
  - the gateway's RSS at the end.
Each measure is capped at --measure-s of wall time; a capped one says how many samples it has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp

from tests.perf import fleet_routing
from tests.perf.procs import Procs, free_port, pct, wait_http

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODELS_ON_DISK = 20
RESIDENT_EVERY = 10


def get_json(url: str, timeout: float = 60.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def health(url: str) -> dict:
    try:
        return get_json(url + "/health")
    except urllib.error.HTTPError as exc:  # 503 while not ready: the body still says why
        return json.loads(exc.read())


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(match.group(1)) / 1024, 1)


def start_fleet(procs: Procs, n: int, models: int) -> tuple[str, list[dict]]:
    spec = ",".join(f"{name}={size / fleet_routing.GIB:g}GiB" for name, size in fleet_routing.catalogue(models))
    proc = procs.python(["-m", "local_workers.sim", "--port", "0", "--workers", str(n), "--name", "w",
                         "--models", spec, "--models-per-worker", str(MODELS_ON_DISK),
                         "--resident-every", str(RESIDENT_EVERY), "--tokens-per-s", "100000",
                         "--load-s-per-gib", "0.01"], f"fleet-{n}")
    log = procs.tmp / f"fleet-{n}.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"control (http://\S+/fleet)", log.read_text())
        if found:
            return found.group(1), get_json(found.group(1))["workers"]
        if proc.poll() is not None:
            raise RuntimeError(f"the fleet exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError("the fleet never listened")


def start_gateway(procs: Procs, n: int, workers: list[dict]) -> tuple[str, int]:
    text = "".join(f'[[workers]]\nname = "{w["name"]}"\nurl = "{w["url"]}"\nkind = "ollama"\ntier = "gpu"\n'
                   "vram_gib = 24\n" for w in workers)
    path = procs.tmp / f"gateway-{n}.toml"
    path.write_text(text)
    port = free_port()
    proc = procs.python(["-m", "gateway", "serve", "--config", str(path)], f"gateway-{n}",
                        env={"BEACON_LISTEN": f"127.0.0.1:{port}", "BEACON_LOG_FORMAT": "json"})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/live", 300, proc)
    return url, proc.pid


def settle(gateway: str, control: str, n: int, limit_s: float) -> dict:
    """Until every worker is up and the gateway has stopped asking /api/show (it learns model
    shapes a few per round at start): the steady state a running fleet is in."""
    deadline, last_show, since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        up = sum(w["up"] for w in health(gateway)["workers"])
        shows = get_json(control)["requests"].get("/api/show", 0)
        if shows != last_show:
            last_show, since = shows, time.monotonic()
        if up == n and time.monotonic() - since > 6:
            return {"up": up, "shape_requests": shows}
        time.sleep(1.0)
    return {"up": up, "shape_requests": last_show, "settle_capped": True}


def probe_rounds(gateway: str, control: str, pid: int, n: int, seconds: float) -> dict:
    """Gateway CPU and snapshot swaps per probe round, with no traffic. Rounds are counted at the
    workers (each round asks every worker /api/ps once); /health is read outside the window."""
    version0, ps0 = health(gateway)["snapshot"]["version"], get_json(control)["requests"].get("/api/ps", 0)
    cpu0 = cpu_s(pid)
    time.sleep(seconds)
    cpu1 = cpu_s(pid)
    ps1 = get_json(control)["requests"].get("/api/ps", 0)
    version1 = health(gateway)["snapshot"]["version"]
    rounds = (ps1 - ps0) / n
    return {"rounds": round(rounds, 2), "window_s": seconds,
            "cpu_ms_per_round": round(1000 * (cpu1 - cpu0) / rounds, 1) if rounds else None,
            "swaps_per_round": round((version1 - version0) / rounds, 1) if rounds else None}


async def latency(gateway: str, direct: str, model: str, seconds: float, limit: int = 400) -> dict:
    """Unloaded non-streamed chats, one at a time, alternating direct and through the gateway."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 1}}
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for url in (direct, gateway):  # warm the connections and the model
            async with http.post(url + "/api/chat", json=body) as resp:
                await resp.read()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(times["gateway"]) < limit:
            for name, url in (("direct", direct), ("gateway", gateway)):
                started = time.perf_counter()
                async with http.post(url + "/api/chat", json=body) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{name} answered {resp.status}")
                times[name].append(1000 * (time.perf_counter() - started))
    out = {"samples": len(times["gateway"]), "capped": len(times["gateway"]) < limit}
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        d, g = pct(times["direct"], q), pct(times["gateway"], q)
        out[f"direct_{label}_ms"], out[f"gateway_{label}_ms"] = round(d, 3), round(g, 3)
        out[f"added_{label}_ms"] = round(g - d, 3)
    return out


OPS_PATHS = ("/health", "/status", "/metrics", "/api/tags", "/v1/models")


def ops_cost(gateway: str, pid: int, seconds: float, calls: int = 10) -> dict:
    """Gateway CPU per call of each on-call and listing endpoint (up to `calls` calls each)."""
    out = {}
    for path in OPS_PATHS:
        cpu0, made, deadline = cpu_s(pid), 0, time.monotonic() + seconds / len(OPS_PATHS)
        while made < calls and (made == 0 or time.monotonic() < deadline):
            try:
                with urllib.request.urlopen(gateway + path, timeout=120) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:  # /health answers 503 when not ready: still a full report
                exc.read()
            made += 1
        out[path] = {"calls": made, "cpu_ms_per_call": round(1000 * (cpu_s(pid) - cpu0) / made, 2)}
    return out


def run_size(n: int, args) -> dict:
    row: dict = {"workers": n, "routing": fleet_routing.measure(n, args.models, args.measure_s)}
    procs = Procs(prefix=f"fleet-scale-{n}-")
    try:
        control, workers = start_fleet(procs, n, args.models)
        gateway, pid = start_gateway(procs, n, workers)
        row["settle"] = settle(gateway, control, n, args.settle_s)
        row["probe_round"] = probe_rounds(gateway, control, pid, n, args.probe_window_s)
        model = fleet_routing.catalogue(args.models)[0][0]  # worker 0's first model: loaded on every 50th worker
        row["latency"] = asyncio.run(latency(gateway, workers[0]["url"], model, args.measure_s, args.chats))
        row["ops"] = ops_cost(gateway, pid, args.measure_s)
        row["gateway_rss_mb"] = rss_mb(pid)
    finally:
        procs.stop(keep_logs=args.keep_logs)
    return row


def print_row(row: dict) -> None:
    r, p, lat = row["routing"], row["probe_round"], row["latency"]
    print(f"{row['workers']:>6} | routing warm {r['warm']['median_us']:>9.1f} / {r['warm']['p99_us']:>9.1f} us"
          f"{' (capped)' if r['warm']['capped'] else ''} | cold {r['cold']['median_us']:>9.1f} / "
          f"{r['cold']['p99_us']:>9.1f} us | added {lat['added_p50_ms']:>8.3f} / {lat['added_p99_ms']:>8.3f} ms "
          f"({lat['samples']} samples) | CPU/round {p['cpu_ms_per_round']} ms | swaps/round {p['swaps_per_round']} "
          f"| RSS {row['gateway_rss_mb']} MB", flush=True)
    print("       ops CPU per call: " + ", ".join(f"{p} {o['cpu_ms_per_call']} ms" for p, o in row["ops"].items()),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4,50,300,1000")
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--measure-s", type=float, default=10.0, help="wall-time cap per measure")
    parser.add_argument("--chats", type=int, default=400, help="most chats each way for the added latency")
    parser.add_argument("--settle-s", type=float, default=90.0)
    parser.add_argument("--probe-window-s", type=float, default=40.0,
                        help="CPU per round is measured over this long: more than [health] listing_interval_s")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--json", default="out/fleet-scale-bench.json")
    args = parser.parse_args()
    started, rows = time.perf_counter(), []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append(run_size(n, args))
        print_row(rows[-1])
    report = {"settings": vars(args), "results": rows, "wall_s": round(time.perf_counter() - started, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}; {report['wall_s']} s")


if __name__ == "__main__":
    main()
