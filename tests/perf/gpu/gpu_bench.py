"""GPU benchmarks of issue 10 (a benchmark, not a test): real llama-server workers on one GPU,
the gateway in front, and three scenarios, each with a time cap.

    python tests/perf/gpu/gpu_bench.py --out DIR [--budget-s 240]      # on the lent H100
    python tests/perf/gpu/gpu_bench.py --cpu-smoke [--out out/gpu-smoke]  # here: same code path, tiny models

Workers: gpu-a and gpu-b serve `bench-1b` (Llama-3.2-1B shape), gpu-c serves `bench-3b` (3B shape),
all `-ngl 99` on GPU 0; cpu-a serves `bench-1b` with `-ngl 0 --threads 4` (tier cpu). The gateway
(`python -m gateway serve`, generated config, under `taskset -c 0,1`) fronts them.

- S6 end to end: direct capacity of one 1B worker (closed loop), then open-loop load at 50/80/95% of
  it, straight at gpu-a and through the gateway (gpu-b drained, so both see one worker): output
  tokens/s, TTFT p50/p99 added, mean time of a 150-token answer, GPU busy share (NVML every 0.5 s).
  Answers are forced to exactly N tokens with `ignore_eos` + `max_tokens` on the OpenAI path (the
  gateway passes /v1 bodies through); a short Ollama-API run checks the tokens counted there.
- S4 affinity: multi-turn conversations sharing long system prompts, through the gateway (session
  affinity) vs a client-side round robin straight to gpu-a/gpu-b (and the gateway with affinity off
  when time allows): prompt tokens reused (llama-server's `timings.cache_n` / `prompt_n`), TTFT p90.
- S5 failover: steady load through the gateway, kill -9 gpu-a: failures of requests that had not
  started (goal 0), cut streams, timeouts; then kill gpu-b too: the CPU tier takes the 1B traffic.

- S7 processes (`--processes N`, run alone, tests/perf/gpu/s7.py): W 1B workers on the GPU, the sum
  of direct against one gateway process against `serve --processes N` with its private Redis:
  tokens/s, TTFT p99, gateway CPU per request from /proc. Writes s7_processes.json.

This file holds the scenarios and main; plan.py the pure plan, results and table, load.py the timed
calls and load drivers, fleet.py the processes.

Writes summary.json, s6_e2e.json, s4_affinity.json, s5_failover.json, gpu_check.json into --out,
each as soon as it is known, and prints a table. Exit 0 when every scenario ran (goals are reported,
not enforced).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.perf.gpu import s7  # noqa: E402
from tests.perf.gpu.fleet import Fleet, make_models  # noqa: E402
from tests.perf.gpu.load import GpuSampler, chat, chat_body, closed_loop, open_loop, short_prompt  # noqa: E402
from tests.perf.gpu.plan import (  # noqa: E402
    GOALS,
    GPU,
    MODEL_1B,
    MODEL_3B,
    SMOKE,
    SPEECH,
    Call,
    Profile,
    after_s6_s,
    compare,
    gateway_config,
    parse_smi,
    render,
    reuse,
    s6_goals,
    scaled,
    summarise,
)

# ---------------------------------------------------------------- scenarios

class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


async def s6_end_to_end(fleet: Fleet, http, p: Profile, sampler: GpuSampler | None, budget: Budget,
                        log) -> dict:
    a, gw = fleet.url("gpu-a"), fleet.gateway_url
    result: dict = {"model": MODEL_1B, "num_predict": p.num_predict, "ignore_eos": True, "api": "openai /v1 stream",
                    "levels": [], "skipped_levels": []}
    log(f"S6: direct capacity of gpu-a, closed loop x{p.cap_concurrency} for {p.cap_s:.0f}s")
    t0 = time.perf_counter()
    calls, wall = await closed_loop(http, a, p.cap_concurrency, p.cap_s, p.num_predict, p.timeout_s, seed=6)
    cap = summarise(calls, wall, p.num_predict)
    cap["gpu_busy"] = sampler.busy(t0, time.perf_counter()) if sampler else None
    result["capacity"] = cap
    log(f"S6: capacity {cap['requests_per_s']} req/s, {cap['tokens_per_s']} tok/s, tokens/answer "
        f"{cap['tokens_per_answer']}, exact share {cap.get('exact_length_share')}")
    if not cap["ok"]:
        raise RuntimeError(f"S6: no answer from gpu-a: {cap['errors']}")
    result["drain_b"] = await fleet.admin(http, "/admin/workers/gpu-b/drain")
    try:
        for i, load in enumerate(p.loads):
            need = 2 * (p.level_s + 3)
            if budget.left() < need + after_s6_s(p) + p.margin_s:
                result["skipped_levels"].append(load)
                continue
            rate = load * cap["requests_per_s"]
            level: dict = {"load": load, "rate": round(rate, 3)}
            order = ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct")
            for arm in order:
                t1 = time.perf_counter()
                calls, wall = await open_loop(http, a if arm == "direct" else gw, rate, p.level_s, p.num_predict,
                                              p.timeout_s, seed=60 + i)
                t2 = t1 + p.level_s
                level[arm] = summarise(calls, wall, p.num_predict)
                level[f"{arm}_gpu_busy"] = sampler.busy(t1, t2) if sampler else None
                log(f"S6: load {load:.2f} {arm:<7} rate {rate:.2f}/s: {level[arm]['ok']} ok "
                    f"{level[arm]['failed']} failed, {level[arm]['tokens_per_s']} tok/s, TTFT p50 "
                    f"{level[arm]['ttft_s']['p50']} p99 {level[arm]['ttft_s']['p99']}, mean answer "
                    f"{level[arm]['latency_s']['mean']}s, GPU busy {level[f'{arm}_gpu_busy']}")
            level["compare"] = compare(level["direct"], level["gateway"])
            result["levels"].append(level)
    finally:
        result["undrain_b"] = await fleet.admin(http, "/admin/workers/gpu-b/undrain")
    result["goals"] = s6_goals(result["levels"])
    if budget.left() > p.ollama_s + p.margin_s:
        result["ollama_path"] = await ollama_path_check(gw, p)
        log(f"S6: Ollama API path: {result['ollama_path']}")
    return result


async def ollama_path_check(gw: str, p: Profile) -> dict:
    """`/api/chat` with options.num_predict through the gateway (translated to llama-server's /v1):
    the tokens the gateway reports (eval_count). ignore_eos cannot travel this way (the gateway
    refuses unknown options), so answers may end early at an end-of-sequence token."""
    from gateway import bench

    options = bench.Options(url=gw, api="ollama", endpoint="chat", models=(MODEL_1B,), num_predict=p.num_predict,
                            concurrency=8, duration_s=p.ollama_s, timeout_s=p.timeout_s)
    report = await bench.run(options)
    return {"ok": report.ok, "failed": report.failed, "total_tokens": report.total_tokens,
            "mean_tokens": round(report.total_tokens / report.ok, 2) if report.ok else None,
            "tokens_per_s": report.total_tokens_per_s, "ttft_s": report.ttft_s, "errors": report.errors}


def _system_prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(SPEECH) for _ in range(words))


async def conversations(http, urls: list[str], p: Profile, seed: int) -> list[Call]:
    """s4_conversations concurrent conversations of s4_turns turns; two system prompts shared by half
    of them each. `urls` of one entry: everything there; of several: a client-side round robin."""
    rng = random.Random(seed)
    systems = [_system_prompt(rng, p.s4_system_words) for _ in range(2)]
    counter = iter(range(10**9))
    calls: list[Call] = []

    async def one(index: int) -> None:
        crng = random.Random(seed * 1000 + index)
        await asyncio.sleep(crng.random() * 0.3)
        messages = [{"role": "system", "content": systems[index % 2]}]
        for turn in range(p.s4_turns):
            messages.append({"role": "user", "content": " ".join(crng.choice(SPEECH) for _ in range(12))})
            url = urls[next(counter) % len(urls)]
            call = await chat(http, url, chat_body(messages, p.s4_predict), p.timeout_s, keep_text=True)
            call.turn = turn
            calls.append(call)
            if not call.ok:
                return
            messages.append({"role": "assistant", "content": call.text})

    await asyncio.gather(*(one(i) for i in range(p.s4_conversations)))
    return calls


async def s4_affinity(fleet: Fleet, http, p: Profile, budget: Budget, log) -> dict:
    arms = {"gateway-affinity": [fleet.gateway_url], "round-robin-direct": [fleet.url("gpu-a"), fleet.url("gpu-b")]}
    result: dict = {"conversations": p.s4_conversations, "turns": p.s4_turns, "system_words": p.s4_system_words,
                    "max_tokens": p.s4_predict, "arms": {}}
    try:  # a degraded worker is ranked after healthy ones, whatever the session
        result["health_before"] = {w["name"]: [w["state"], w.get("degraded")]
                                   for w in (await fleet.health(http)).get("workers", [])}
    except Exception as exc:  # noqa: BLE001
        result["health_before"] = str(exc)
    for seed, (arm, urls) in enumerate(arms.items(), start=40):
        if budget.left() < 4 * p.s4_turns * (1 + p.s4_predict / 40) + p.margin_s:
            result.setdefault("skipped_arms", []).append(arm)
            continue
        t0 = time.perf_counter()
        calls = await conversations(http, urls, p, seed)
        run = summarise(calls, time.perf_counter() - t0)
        result["arms"][arm] = {"run": run, "reuse": reuse(calls),
                               "reuse_later_turns": reuse([c for c in calls if c.turn > 0])}
        log(f"S4: {arm}: {run['ok']} ok {run['failed']} failed, reuse {result['arms'][arm]['reuse']}, "
            f"TTFT p90 {run['ttft_s']['p90']}, by worker {run['by_worker']}")
    if budget.left() > 4 * p.s4_turns * (1 + p.s4_predict / 40) + 2 * p.margin_s:
        fleet.config_path.write_text(gateway_config(fleet.specs, affinity=False))
        reload = await fleet.admin(http, "/admin/reload")
        t0 = time.perf_counter()
        calls = await conversations(http, [fleet.gateway_url], p, 43)
        run = summarise(calls, time.perf_counter() - t0)
        result["arms"]["gateway-no-affinity"] = {"run": run, "reuse": reuse(calls), "reload": reload,
                                                 "reuse_later_turns": reuse([c for c in calls if c.turn > 0])}
        log(f"S4: gateway-no-affinity: {run['ok']} ok, reuse {reuse(calls)}, TTFT p90 {run['ttft_s']['p90']}")
        fleet.config_path.write_text(gateway_config(fleet.specs, affinity=True))
        result["reload_back"] = await fleet.admin(http, "/admin/reload")
    arms_done = result["arms"]
    if "gateway-affinity" in arms_done and "round-robin-direct" in arms_done:
        g, r = arms_done["gateway-affinity"], arms_done["round-robin-direct"]
        result["compare"] = {"reused_share_gateway": g["reuse"]["reused_share"],
                             "reused_share_round_robin": r["reuse"]["reused_share"],
                             "ttft_p90_gateway_s": g["run"]["ttft_s"]["p90"],
                             "ttft_p90_round_robin_s": r["run"]["ttft_s"]["p90"]}
    return result


async def s5_failover(fleet: Fleet, http, p: Profile, capacity_rps: float, budget: Budget, log) -> dict:
    gw = fleet.gateway_url
    rate = max(0.5, 0.6 * capacity_rps)
    kill_at = 0.35 * p.s5_s
    killed: dict = {}

    def kill(name: str) -> None:
        killed[name] = time.perf_counter()
        fleet.servers[name].kill()
        log(f"S5: kill -9 {name}")

    result: dict = {"rate": round(rate, 3), "duration_s": p.s5_s, "kill_at_s": kill_at, "num_predict": p.num_predict}
    try:
        result["health_before"] = {w["name"]: [w["state"], w.get("degraded")]
                                   for w in (await fleet.health(http)).get("workers", [])}
    except Exception as exc:  # noqa: BLE001
        result["health_before"] = str(exc)
    log(f"S5: open loop {rate:.2f}/s through the gateway for {p.s5_s:.0f}s, kill gpu-a at {kill_at:.1f}s")
    calls, wall = await open_loop(http, gw, rate, p.s5_s, p.num_predict, p.timeout_s, seed=5,
                                  at=[(kill_at, lambda: kill("gpu-a"))])
    result["kill_one"] = summarise(calls, wall, p.num_predict)
    after = [c for c in calls if "gpu-a" in killed and c.sent_at >= killed["gpu-a"]]
    result["after_kill"] = {"sent": len(after), "ok": sum(c.ok for c in after),
                            "by_worker": summarise(after, 1.0)["by_worker"]}
    result["cpu_took"] = result["kill_one"]["by_worker"].get("cpu-a", 0)
    log(f"S5: {result['kill_one']['sent']} sent, failed not started {result['kill_one']['failed_not_started']}, "
        f"cut {result['kill_one']['cut_after_first_token']}, by worker {result['kill_one']['by_worker']}")
    if budget.left() < p.s5_cpu_s + p.margin_s:
        result["cpu_takeover"] = None
        return result
    kill("gpu-b")
    calls, wall = await closed_loop(http, gw, 2, p.s5_cpu_s, p.s5_cpu_predict, p.timeout_s, seed=55)
    result["cpu_takeover"] = summarise(calls, wall, p.s5_cpu_predict)
    try:
        result["health_after"] = {w["name"]: w["state"] for w in (await fleet.health(http)).get("workers", [])}
    except Exception as exc:  # noqa: BLE001
        result["health_after"] = str(exc)
    log(f"S5: CPU takeover: {result['cpu_takeover']['ok']} ok of {result['cpu_takeover']['sent']}, by worker "
        f"{result['cpu_takeover']['by_worker']}, health {result['health_after']}")
    return result


def gpu_check(sampler: GpuSampler | None, health: dict) -> dict:
    """pynvml's reading of GPU 0 against nvidia-smi's, and what the gateway reports."""
    if sampler is None:
        return {"verdict": "skipped (no NVML in the CPU smoke run)"}
    nv = sampler.nvml
    mem = nv.nvmlDeviceGetMemoryInfo(sampler.handle)
    util = nv.nvmlDeviceGetUtilizationRates(sampler.handle)
    name = nv.nvmlDeviceGetName(sampler.handle)
    mine = {"name": name.decode() if isinstance(name, bytes) else name, "memory_used_mib": round(mem.used / 2**20),
            "memory_total_mib": round(mem.total / 2**20), "utilization_pct": util.gpu}
    try:
        smi_text = subprocess.run(["nvidia-smi", "--query-gpu=memory.used,memory.total,utilization.gpu",
                                   "--format=csv"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        smi_text = f"nvidia-smi failed: {exc}"
    smi = parse_smi(smi_text)
    out: dict = {"pynvml": mine, "nvidia_smi_csv": smi_text.strip(), "nvidia_smi": smi,
                 "gateway": [{k: w.get(k) for k in ("name", "vram_used_bytes", "vram_total_bytes", "vram_source",
                                                    "gpu")} for w in health.get("workers", [])],
                 "gateway_nvml": health.get("nvml")}
    if smi:
        row = smi[0]
        used_diff = abs(row["memory_used_mib"] - mine["memory_used_mib"])
        total_diff = abs(row["memory_total_mib"] - mine["memory_total_mib"])
        agree = used_diff <= max(512, 0.02 * row["memory_total_mib"]) and total_diff <= 1024
        out["used_diff_mib"], out["total_diff_mib"] = used_diff, total_diff
        out["verdict"] = (f"{'agree' if agree else 'DISAGREE'}: pynvml used/total {mine['memory_used_mib']}/"
                          f"{mine['memory_total_mib']} MiB, nvidia-smi {row['memory_used_mib']:.0f}/"
                          f"{row['memory_total_mib']:.0f} MiB")
    else:
        out["verdict"] = "nvidia-smi gave no reading"
    return out


# ---------------------------------------------------------------- main

def write(out: Path, name: str, data: dict) -> None:
    (out / name).write_text(json.dumps(data, indent=2, default=str))


async def main_s7(args: argparse.Namespace, p: Profile, exe: Path, budget: Budget, out: Path, tmp: Path,
                  log) -> int:
    """`--processes N`: S7 alone (tests/perf/gpu/s7.py), W 1B workers and no other scenario."""
    import aiohttp

    if p.gpu:
        try:
            os.sched_setaffinity(0, set(s7.CLIENT_CORES))  # the gateway's cores stay the gateway's
        except OSError:
            pass
    workers = args.workers or (4 if p.gpu else 2)
    summary: dict = {"profile": p.name, "scenario": "s7", "budget_s": args.budget_s, "skipped": {}}
    models = await make_models(p, Path(args.models))
    fleet = Fleet(p, exe, models, tmp)
    status = 0
    try:
        t0 = time.perf_counter()
        await fleet.start_workers(s7.s7_plan(p, workers))
        log(f"S7: {workers} workers up in {time.perf_counter() - t0:.1f}s")
        summary["nvidia_smi"] = _smi_line() if p.gpu else None
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
            summary["s7"] = await s7.s7_processes(fleet, http, p, args.processes, budget, log)
        summary["nvidia_smi_after"] = _smi_line() if p.gpu else None
    except Exception as exc:  # noqa: BLE001
        summary["error"] = f"{type(exc).__name__}: {exc}"
        log(f"S7 failed: {summary['error']}")
        status = 1
    finally:
        await fleet.stop()
        tails = [f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-25:])
                 for f in sorted(tmp.glob("*.log"))]
        (out / "logs_tail.txt").write_text("\n".join(tails))
        write(out, "s7_processes.json", summary)
    print(s7.render(summary), flush=True)
    return status


def _smi_line() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.used,memory.total,utilization.gpu",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"


async def main_async(args: argparse.Namespace) -> int:
    import aiohttp

    from local_workers.llamaserver import binary

    p = SMOKE if args.cpu_smoke else GPU
    budget = Budget(args.budget_s)
    p = scaled(p, args.budget_s - (15 if p.gpu else 5))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.work)
    tmp.mkdir(parents=True, exist_ok=True)
    for stale in [*tmp.glob("*.log"), tmp / "gateway.toml"]:  # this run's logs only
        stale.unlink(missing_ok=True)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')} {budget.left():5.0f}s left] {msg}", flush=True)  # noqa: E731
    exe = Path(args.llama_server) if args.llama_server else binary()
    if exe is None or not exe.is_file():
        print("no llama-server binary: set --llama-server or BEACON_LLAMA_SERVER, or run .ci/build-llama-server")
        return 2
    if args.processes:
        return await main_s7(args, p, exe, budget, out, tmp, log)
    if p.gpu:
        try:
            os.sched_setaffinity(0, {2, 3})  # the load generator keeps off the gateway's and workers' cores
        except OSError:
            pass
    summary: dict = {"profile": p.name, "plan": asdict(p), "budget_s": args.budget_s, "goals": GOALS, "skipped": {}}
    sampler = None
    if p.gpu:
        try:
            sampler = GpuSampler(0)
        except Exception as exc:  # noqa: BLE001
            summary["skipped"]["nvml"] = f"pynvml: {exc}"
    log(f"profile {p.name}, llama-server {exe}, models in {args.models}")
    models = await make_models(p, Path(args.models))
    fleet = Fleet(p, exe, models, tmp)
    status = 0
    try:
        t0 = time.perf_counter()
        await fleet.start_workers()
        log(f"workers up in {time.perf_counter() - t0:.1f}s: " + ", ".join(f"{s.name}={s.url}" for s in fleet.specs))
        fleet.start_gateway()
        # llama-server closes idle keep-alive connections after 5 s: reuse ours for less than that
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
            health = await fleet.wait_gateway(http)
            log(f"gateway {fleet.gateway_url} sees every worker healthy")
            summary["gpu_check"] = gpu_check(sampler, health)
            summary["device"] = (summary["gpu_check"].get("pynvml") or {}).get("name")
            write(out, "gpu_check.json", summary["gpu_check"])
            log(f"GPU check: {summary['gpu_check']['verdict']}")
            t0 = time.perf_counter()
            warm = await asyncio.gather(*(chat(http, fleet.url(name), chat_body(short_prompt(random.Random(i)), 16),
                                               p.timeout_s)
                                          for name in fleet.servers for i in range(4)))
            summary["warmup"] = {"ok": sum(c.ok for c in warm), "sent": len(warm),
                                 "s": round(time.perf_counter() - t0, 3)}
            log(f"warm-up, 4 short answers from each worker: {summary['warmup']}")
            probe = await chat(http, fleet.gateway_url, chat_body(short_prompt(random.Random(0)), 8, MODEL_3B),
                               p.timeout_s)
            summary["bench_3b_probe"] = {"ok": probe.ok, "worker": probe.worker, "tokens": probe.tokens,
                                         "error": probe.error}
            log(f"3B model through the gateway: {summary['bench_3b_probe']}")
            capacity_rps = None
            for name, scenario in (("s6", "s6_e2e.json"), ("s4", "s4_affinity.json"), ("s5", "s5_failover.json")):
                if budget.left() < p.margin_s + 5:
                    summary["skipped"][name] = f"budget: {budget.left():.0f}s left"
                    continue
                try:
                    async with asyncio.timeout(max(10.0, budget.left() - 10)):
                        if name == "s6":
                            result = await s6_end_to_end(fleet, http, p, sampler, budget, log)
                            capacity_rps = result["capacity"]["requests_per_s"]
                        elif name == "s4":
                            result = await s4_affinity(fleet, http, p, budget, log)
                        else:
                            result = await s5_failover(fleet, http, p, capacity_rps or 1.0, budget, log)
                except Exception as exc:  # noqa: BLE001 - one scenario's failure must not lose the others
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    status = 1
                    log(f"{name} failed: {result['error']}")
                summary[name] = result
                write(out, scenario, result)
                write(out, "summary.json", summary)
    except Exception as exc:  # noqa: BLE001
        summary["error"] = f"{type(exc).__name__}: {exc}"
        log(f"fleet failed: {summary['error']}")
        status = 1
    finally:
        await fleet.stop()
        if sampler:
            sampler.stop()
        tails = [f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-25:])
                 for f in sorted(tmp.glob("*.log"))]
        (out / "logs_tail.txt").write_text("\n".join(tails))
        write(out, "summary.json", summary)
    print(render(summary), flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", default=os.environ.get("GPU_BENCH_CPU_SMOKE") == "1",
                        help="tiny models, -ngl 0, short phases: the same code path on a machine without a GPU")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out/gpu-bench", help="folder for the JSON files")
    parser.add_argument("--models", default="/tmp/gpu-bench-models", help="folder of the GGUF models (made if absent)")
    parser.add_argument("--work", default="/tmp/gpu-bench-work", help="folder for logs and the gateway config")
    parser.add_argument("--llama-server", help="the llama-server binary (default: BEACON_LLAMA_SERVER or the cache)")
    parser.add_argument("--budget-s", type=float, default=None, help="hard time budget for everything")
    parser.add_argument("--processes", type=int, default=0, metavar="N",
                        help="run S7 alone: the sum of direct vs one gateway process vs `serve --processes N`")
    parser.add_argument("--workers", type=int, default=0, help="S7's 1B workers on the GPU (default 4; smoke 2)")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 60.0 if args.cpu_smoke else 240.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
