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
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL_1B, MODEL_3B = "bench-1b", "bench-3b"
ADMIN_TOKEN = "gpu-bench-admin"
GOALS = {"throughput_ratio_min": 0.98, "ttft_added_p99_max_s": 0.002, "gpu_busy_at_80_min": 0.80,
         "mean_answer_max_s": 2.0, "failed_not_started_max": 0}
SPEECH = ("the sky is blue because light scatters in air and we see it every day hello world model answer yes no "
          "one two three").split()  # words the tiny tokenizer knows: about one token each


# ---------------------------------------------------------------- plan (pure)

@dataclass(frozen=True)
class Profile:
    name: str
    gpu: bool
    gpu_parallel: int
    gpu_ctx: int
    cpu_parallel: int
    cpu_ctx: int
    cpu_threads: int
    num_predict: int
    cap_concurrency: int
    cap_s: float
    level_s: float
    loads: tuple[float, ...]
    ollama_s: float
    s4_conversations: int
    s4_turns: int
    s4_system_words: int
    s4_predict: int
    s5_s: float
    s5_cpu_s: float
    s5_cpu_predict: int
    timeout_s: float
    margin_s: float  # time kept back for the phases after the one about to start


GPU = Profile("gpu", True, gpu_parallel=16, gpu_ctx=16 * 4096, cpu_parallel=2, cpu_ctx=2 * 2048, cpu_threads=4,
              num_predict=150, cap_concurrency=32, cap_s=12, level_s=15, loads=(0.5, 0.8, 0.95), ollama_s=5,
              s4_conversations=24, s4_turns=4, s4_system_words=120, s4_predict=48, s5_s=18, s5_cpu_s=8,
              s5_cpu_predict=24, timeout_s=60, margin_s=25)
SMOKE = Profile("cpu-smoke", False, gpu_parallel=2, gpu_ctx=2 * 2048, cpu_parallel=2, cpu_ctx=2 * 2048,
                cpu_threads=1, num_predict=150, cap_concurrency=4, cap_s=1.5, level_s=1.2, loads=(0.5, 0.8, 0.95),
                ollama_s=1, s4_conversations=4, s4_turns=3, s4_system_words=60, s4_predict=8, s5_s=4, s5_cpu_s=2,
                s5_cpu_predict=8, timeout_s=30, margin_s=3)


def planned_s(p: Profile) -> float:
    """Seconds the scenarios take as planned (drains and pauses included, roughly)."""
    s6 = p.cap_s + 2 + len(p.loads) * 2 * (p.level_s + 2) + p.ollama_s + 2
    return s6 + after_s6_s(p)


def after_s6_s(p: Profile) -> float:
    """Seconds S4 and S5 need: S6 leaves them this much."""
    return 3 * (2 + p.s4_turns * (0.5 + 0.012 * p.s4_predict)) + p.s5_s + p.s5_cpu_s + 10


def scaled(p: Profile, budget_s: float) -> Profile:
    """The profile with its timed phases shortened so the plan fits the budget (never below 40%)."""
    factor = max(0.4, min(1.0, budget_s / planned_s(p)))
    if factor >= 1.0:
        return p
    return replace(p, cap_s=p.cap_s * factor, level_s=p.level_s * factor, ollama_s=p.ollama_s * factor,
                   s5_s=p.s5_s * factor, s5_cpu_s=p.s5_cpu_s * factor)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    url: str
    tier: str
    model: str
    gpu_index: int | None = None


def gateway_config(workers: list[WorkerSpec], *, affinity: bool = True) -> str:
    """The gateway's routing TOML for the bench fleet: fast health checks, generous queues."""
    lines = []
    for w in workers:
        lines += ["[[workers]]", f'name = "{w.name}"', f'url = "{w.url}"', 'kind = "llamacpp"', f'tier = "{w.tier}"']
        if w.gpu_index is not None:
            lines.append(f"gpu_index = {w.gpu_index}")
        lines.append("")
    lines += ["[routing]", f"affinity = {'true' if affinity else 'false'}", "",
              "[health]", "interval_s = 0.5", "timeout_s = 1.0", "unhealthy_threshold = 2", "healthy_threshold = 1",
              "", "[failover]", "connect_timeout_s = 1.0", "gpu_first_byte_timeout_s = 15.0",
              "cpu_first_byte_timeout_s = 60.0", "stream_idle_timeout_s = 30.0", "cpu_max_expected_s = 120",
              "", "[admission]", "max_queue = 1024", "queue_timeout_s = 60", "",
              "[server]", "config_poll_s = 0", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- results (pure)

@dataclass
class Call:
    sent_at: float
    ok: bool = False
    status: int | None = None
    error: str | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    tokens: int = 0  # usage.completion_tokens (else content chunks)
    chunks: int = 0
    worker: str | None = None
    headers: bool = False  # a response head arrived
    cache_n: int | None = None
    prompt_n: int | None = None
    timed_out: bool = False
    retries: int = 0  # pooled connections found closed before any answer (retried)
    stale: bool = False
    turn: int = 0  # S4: the turn of its conversation, from 0
    text: str = field(default="", repr=False)


def pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def _r(x: float | None, n: int = 6) -> float | None:
    return None if x is None else round(x, n)


def summarise(calls: list[Call], wall_s: float, expected_tokens: int | None = None) -> dict:
    """One run's figures: counts, failure classes, tokens/s, TTFT and latency percentiles."""
    ok = [c for c in calls if c.ok]
    failed = [c for c in calls if not c.ok]
    ttft = [c.ttft_s for c in ok if c.ttft_s is not None]
    lat = [c.latency_s for c in ok]
    tokens = [c.tokens for c in ok]
    errors: dict[str, int] = {}
    for c in failed:
        key = (c.error or f"HTTP {c.status}")[:240]
        errors[key] = errors.get(key, 0) + 1
    by_worker: dict[str, int] = {}
    for c in ok:
        by_worker[c.worker or "direct"] = by_worker.get(c.worker or "direct", 0) + 1
    out = {
        "sent": len(calls), "ok": len(ok), "failed": len(failed), "timeouts": sum(c.timed_out for c in calls),
        "failed_not_started": sum(1 for c in failed if c.ttft_s is None),
        "failed_before_headers": sum(1 for c in failed if not c.headers),
        "cut_after_first_token": sum(1 for c in failed if c.ttft_s is not None),
        "wall_s": round(wall_s, 3),
        "tokens": sum(tokens), "tokens_per_s": round(sum(tokens) / wall_s, 1) if wall_s > 0 else 0.0,
        "requests_per_s": round(len(ok) / wall_s, 3) if wall_s > 0 else 0.0,
        "tokens_per_answer": {"min": min(tokens), "mean": round(sum(tokens) / len(tokens), 2),
                              "max": max(tokens)} if tokens else {},
        "ttft_s": {"p50": _r(pct(ttft, 0.5)), "p90": _r(pct(ttft, 0.9)), "p99": _r(pct(ttft, 0.99)),
                   "mean": _r(sum(ttft) / len(ttft)) if ttft else None},
        "latency_s": {"p50": _r(pct(lat, 0.5)), "p99": _r(pct(lat, 0.99)),
                      "mean": _r(sum(lat) / len(lat)) if lat else None},
        "by_worker": by_worker, "errors": errors, "stale_connection_retries": sum(c.retries for c in calls),
    }
    if expected_tokens is not None and tokens:
        out["exact_length_share"] = round(sum(t == expected_tokens for t in tokens) / len(tokens), 4)
    return out


def compare(direct: dict, gateway: dict) -> dict:
    """Gateway vs direct at one load level."""
    def added(key: str) -> float | None:
        d, g = direct["ttft_s"].get(key), gateway["ttft_s"].get(key)
        return None if d is None or g is None else round(g - d, 6)

    ratio = gateway["tokens_per_s"] / direct["tokens_per_s"] if direct.get("tokens_per_s") else None
    return {"throughput_ratio": _r(ratio, 4), "ttft_added_p50_s": added("p50"), "ttft_added_p99_s": added("p99")}


def s6_goals(levels: list[dict]) -> dict:
    """The issue's S6 goals, each True/False (None when not measured)."""
    def at(load: float) -> dict | None:
        return next((lv for lv in levels if abs(lv["load"] - load) < 1e-9), None)

    ratios = [lv["compare"]["throughput_ratio"] for lv in levels if lv["compare"]["throughput_ratio"] is not None]
    added = [lv["compare"]["ttft_added_p99_s"] for lv in levels if lv["compare"]["ttft_added_p99_s"] is not None]
    means = [lv["gateway"]["latency_s"]["mean"] for lv in levels if lv["gateway"]["latency_s"]["mean"] is not None]
    busy80 = (at(0.8) or {}).get("gateway_gpu_busy")
    return {
        "throughput_ratio_ge_0.98": min(ratios) >= GOALS["throughput_ratio_min"] if ratios else None,
        "ttft_added_p99_le_2ms": max(added) <= GOALS["ttft_added_p99_max_s"] if added else None,
        "gpu_busy_ge_80pct_at_80pct_load": None if busy80 is None else busy80 >= GOALS["gpu_busy_at_80_min"],
        "mean_150_token_answer_lt_2s": max(means) < GOALS["mean_answer_max_s"] if means else None,
    }


def reuse(calls: list[Call]) -> dict:
    """Prompt tokens reused from llama-server's KV cache (cache_n) over all prompt tokens."""
    seen = [c for c in calls if c.ok and c.cache_n is not None and c.prompt_n is not None]
    cached, fresh = sum(c.cache_n for c in seen), sum(c.prompt_n for c in seen)
    return {"answers_with_timings": len(seen), "cached_tokens": cached, "evaluated_tokens": fresh,
            "reused_share": round(cached / (cached + fresh), 4) if cached + fresh else None}


def parse_smi(text: str) -> list[dict]:
    """`nvidia-smi --query-gpu=memory.used,memory.total,utilization.gpu --format=csv` -> one dict a GPU."""
    rows = []
    for line in text.strip().splitlines()[1:]:
        cells = [c.strip().split()[0] if c.strip() else "" for c in line.split(",")]
        if len(cells) >= 3 and all(x.replace(".", "", 1).isdigit() for x in cells[:3]):
            rows.append({"memory_used_mib": float(cells[0]), "memory_total_mib": float(cells[1]),
                         "utilization_pct": float(cells[2])})
    return rows


def render(summary: dict) -> str:
    """The readable table of the summary."""
    ms = lambda x: "-" if x is None else f"{1000 * x:.1f}"  # noqa: E731
    out = [f"== gpu_bench {summary.get('profile')} on {summary.get('device') or 'no GPU'} =="]
    s6 = summary.get("s6") or {}
    if s6.get("capacity"):
        cap = s6["capacity"]
        out.append(f"S6 direct capacity (one 1B worker): {cap['requests_per_s']:.2f} req/s, "
                   f"{cap['tokens_per_s']:.0f} tok/s, tokens/answer {cap.get('tokens_per_answer')}")
        out.append(f"{'load':>5} {'rate':>6} | {'tok/s dir':>9} {'tok/s gw':>9} {'ratio':>6} | "
                   f"{'TTFT p50 d/g ms':>16} {'p99 d/g ms':>14} {'+p99 ms':>8} | {'mean ans s':>10} | {'GPU busy':>8}")
        for lv in s6.get("levels", []):
            d, g, c = lv["direct"], lv["gateway"], lv["compare"]
            busy = lv.get("gateway_gpu_busy")
            out.append(f"{lv['load']:>5.2f} {lv['rate']:>6.2f} | {d['tokens_per_s']:>9.0f} {g['tokens_per_s']:>9.0f} "
                       f"{(c['throughput_ratio'] or 0):>6.3f} | "
                       f"{ms(d['ttft_s']['p50']):>7}/{ms(g['ttft_s']['p50']):<8} "
                       f"{ms(d['ttft_s']['p99']):>6}/{ms(g['ttft_s']['p99']):<7} {ms(c['ttft_added_p99_s']):>8} | "
                       f"{g['latency_s']['mean'] or 0:>10.3f} | {'-' if busy is None else f'{100 * busy:.0f}%':>8}")
        if s6.get("ollama_path"):
            o = s6["ollama_path"]
            out.append(f"S6 Ollama API through gateway: {o.get('ok')} ok, {o.get('failed')} failed, "
                       f"mean eval_count {o.get('mean_tokens')}, {o.get('tokens_per_s')} tok/s")
        out.append(f"S6 goals: {s6.get('goals')}")
    s4 = summary.get("s4") or {}
    for arm, r in (s4.get("arms") or {}).items():
        out.append(f"S4 {arm:<20} reused {r['reuse']['reused_share']} ({r['reuse']['cached_tokens']} of "
                   f"{r['reuse']['cached_tokens'] + r['reuse']['evaluated_tokens']} prompt tokens), "
                   f"TTFT p50 {ms(r['run']['ttft_s']['p50'])} ms p90 {ms(r['run']['ttft_s']['p90'])} ms, "
                   f"{r['run']['failed']} failed")
    s5 = summary.get("s5") or {}
    if s5.get("kill_one"):
        k = s5["kill_one"]
        out.append(f"S5 kill -9 gpu-a: {k['sent']} sent, failed not started {k['failed_not_started']} (goal 0), "
                   f"cut mid-stream {k['cut_after_first_token']}, timeouts {k['timeouts']}, "
                   f"by worker {k['by_worker']}, after kill {s5.get('after_kill')}")
    if s5.get("cpu_takeover"):
        k = s5["cpu_takeover"]
        out.append(f"S5 gpu-b killed too (CPU tier): {k['ok']} ok of {k['sent']}, by worker {k['by_worker']}, "
                   f"failed not started {k['failed_not_started']}, errors {k['errors']}")
    if summary.get("gpu_check"):
        out.append(f"GPU check: {summary['gpu_check'].get('verdict')}")
    for name, note in (summary.get("skipped") or {}).items():
        out.append(f"skipped {name}: {note}")
    return "\n".join(out)


# ---------------------------------------------------------------- load (I/O)

def chat_body(messages: list[dict], max_tokens: int, model: str = MODEL_1B) -> bytes:
    return json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "ignore_eos": True,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()


async def chat(http, url: str, body: bytes, timeout_s: float, keep_text: bool = False) -> Call:
    """One streamed /v1/chat/completions call, timed from the client's side. llama-server closes its
    connection after a streamed answer without saying so: a pooled connection that fails before any
    answer is retried (twice at most) on another, as HTTP clients do; `retries` counts it."""
    import aiohttp

    call = Call(sent_at=time.perf_counter())
    for _ in range(3):
        await _chat_once(http, url, body, timeout_s, keep_text, call)
        if not call.stale:
            break
        call.retries += 1
        call.error = call.status = None
        call.stale = False
    return call


async def _chat_once(http, url: str, body: bytes, timeout_s: float, keep_text: bool, call: Call) -> Call:
    import aiohttp

    started, done, parts = call.sent_at, False, []
    try:
        async with asyncio.timeout(timeout_s):
            async with http.post(url + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:
                call.status, call.headers = resp.status, True
                call.worker = resp.headers.get("X-Beacon-Worker")
                if resp.status != 200:
                    call.error = f"HTTP {resp.status}: {(await resp.read())[:300].decode('utf-8', 'replace')}"
                else:
                    async for raw in resp.content:
                        line = raw.strip()
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            done = True
                            continue
                        data = json.loads(payload)
                        if data.get("error"):
                            call.error = f"error event: {str(data['error'])[:240]}"
                            break
                        for choice in data.get("choices") or ():
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                if call.ttft_s is None:
                                    call.ttft_s = time.perf_counter() - started
                                call.chunks += 1
                                if keep_text:
                                    parts.append(content)
                        usage, timings = data.get("usage"), data.get("timings")
                        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                            call.tokens = int(usage["completion_tokens"])
                        if isinstance(timings, dict) and "cache_n" in timings:
                            call.cache_n, call.prompt_n = timings.get("cache_n"), timings.get("prompt_n")
                    if call.error is None and not done:
                        call.error = "stream ended without [DONE]"
    except TimeoutError:
        call.error, call.timed_out = "timeout", True
    except aiohttp.ClientConnectorError as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
        call.stale = not call.headers
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        call.error = f"{type(exc).__name__}: {exc}"[:120]
    call.latency_s = time.perf_counter() - started
    call.tokens = call.tokens or call.chunks
    call.ok = call.error is None and call.status == 200
    call.text = "".join(parts)
    return call


def short_prompt(rng: random.Random, words: int = 24) -> list[dict]:
    return [{"role": "user", "content": " ".join(rng.choice(SPEECH) for _ in range(words))}]


async def closed_loop(http, url: str, concurrency: int, duration_s: float, max_tokens: int,
                      timeout_s: float, seed: int = 1) -> tuple[list[Call], float]:
    rng, calls = random.Random(seed), []
    started = time.perf_counter()
    deadline = started + duration_s

    async def client() -> None:
        while time.perf_counter() < deadline:
            calls.append(await chat(http, url, chat_body(short_prompt(rng), max_tokens), timeout_s))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return calls, time.perf_counter() - started


async def open_loop(http, url: str, rate: float, duration_s: float, max_tokens: int, timeout_s: float,
                    seed: int = 1, at: list[tuple[float, object]] | None = None) -> tuple[list[Call], float]:
    """Poisson arrivals at `rate`/s for `duration_s`, then waits for what is in flight. `at` holds
    (seconds after start, callable) events to run during the window (a kill, say)."""
    rng, calls, pending = random.Random(seed), [], set()
    events = sorted(at or [], key=lambda e: e[0])
    started = time.perf_counter()
    next_at, deadline = started, started + duration_s

    async def fire() -> None:
        calls.append(await chat(http, url, chat_body(short_prompt(rng), max_tokens), timeout_s))

    while time.perf_counter() < deadline:
        while events and time.perf_counter() - started >= events[0][0]:
            result = events.pop(0)[1]()
            if asyncio.iscoroutine(result):
                await result
        task = asyncio.create_task(fire())
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_at += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if pending:
        await asyncio.wait(pending, timeout=timeout_s + 5)
    return calls, time.perf_counter() - started


class GpuSampler:
    """NVML utilization and memory of one GPU every `every_s` in a thread; mean over a window."""

    def __init__(self, index: int = 0, every_s: float = 0.5) -> None:
        import pynvml

        self.nvml, self.every_s = pynvml, every_s
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu
                used = self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20
                self.samples.append((time.perf_counter(), float(util), used))
            except Exception:  # noqa: BLE001 - a failed read is a missing sample
                pass
            self._stop.wait(self.every_s)

    def busy(self, start: float, end: float) -> float | None:
        window = [u for t, u, _ in self.samples if start <= t <= end]
        return round(sum(window) / len(window) / 100, 4) if window else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------- fleet (I/O)

def _taskset(cpus: str | None) -> tuple[str, ...]:
    return ("taskset", "-c", cpus) if cpus and shutil.which("taskset") else ()


async def make_models(p: Profile, folder: Path) -> dict[str, Path]:
    from backends.tinygguf import make_shaped_llama, make_tiny_llama

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

    async def start_workers(self) -> None:
        from backends.llamaserver import start_server

        p, gi = self.p, (0 if self.p.gpu else None)
        # llama-server keeps --threads-http threads; past them it serves a connection on a thread that
        # exits after one request and closes it, so a client that reuses its keep-alive connections (the
        # gateway, this bench) sees "Server disconnected". Enough fixed threads for every connection:
        http_threads = ("--threads-http", str(4 * max(p.gpu_parallel, p.cap_concurrency) + 32))
        ngl = ("-ngl", "99", *http_threads) if p.gpu else ("-ngl", "0", *http_threads)
        plan = [("gpu-a", "gpu", MODEL_1B, ngl + ("-t", "2"), "4,5", p.gpu_parallel, p.gpu_ctx),
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

    def start_gateway(self, affinity: bool = True) -> None:
        from backends.llamaserver import free_port

        self.config_path.write_text(gateway_config(self.specs, affinity=affinity))
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "BEACON_ADMIN_TOKEN": ADMIN_TOKEN, "BEACON_LOG_FORMAT": "json",
               "BEACON_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
        log = open(self.tmp / "gateway.log", "ab")  # noqa: SIM115 - the child keeps its copy
        self.gateway = subprocess.Popen(
            [*_taskset("0,1"), sys.executable, "-m", "gateway", "serve", "--config", str(self.config_path),
             "--listen", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()

    async def health(self, http) -> dict:
        async with http.get(self.gateway_url + "/health") as resp:
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

    async def stop(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            try:
                os.killpg(self.gateway.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.gateway.wait()
        for server in self.servers.values():
            server.kill()
            await server.process.wait()


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


async def main_async(args: argparse.Namespace) -> int:
    import aiohttp

    from backends.llamaserver import binary

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
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 60.0 if args.cpu_smoke else 240.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
