"""The GPU benchmark's pure parts: profiles and time budgets, the gateway config it generates, and
the summaries, comparisons, goals and table made of the calls it timed. No I/O (tested in
tests/unit/test_gpu_bench_plan.py); tests/perf/gpu/gpu_bench.py runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tests.perf.procs import pct

MODEL_1B, MODEL_3B = "bench-1b", "bench-3b"
ADMIN_TOKEN = "gpu-bench-admin"
GOALS = {"throughput_ratio_min": 0.98, "ttft_added_p99_max_s": 0.002, "gpu_busy_at_80_min": 0.80,
         "mean_answer_max_s": 2.0, "failed_not_started_max": 0}
SPEECH = ("the sky is blue because light scatters in air and we see it every day hello world model answer yes no "
          "one two three").split()  # words the tiny tokenizer knows: about one token each


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
              "cpu_first_byte_timeout_s = 60.0", "stream_idle_timeout_s = 30.0",
              "", "[cpu]", "max_expected_s = 120", "", "[admission]", "max_queue = 1024", "queue_timeout_s = 60", "",
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
