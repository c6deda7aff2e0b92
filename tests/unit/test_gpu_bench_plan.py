"""The GPU benchmark's pure parts: the gateway config it generates is valid, and its summaries,
comparisons, goal checks, cache-reuse share and nvidia-smi parsing say what the numbers say."""

from __future__ import annotations

from gateway.config import parse_config
from tests.perf.gpu.plan import (
    GPU,
    SMOKE,
    Call,
    WorkerSpec,
    compare,
    gateway_config,
    parse_smi,
    planned_s,
    render,
    reuse,
    s6_goals,
    scaled,
    summarise,
)

FLEET = [WorkerSpec("gpu-a", "http://127.0.0.1:9001", "gpu", "bench-1b", 0),
         WorkerSpec("gpu-b", "http://127.0.0.1:9002", "gpu", "bench-1b", 0),
         WorkerSpec("cpu-a", "http://127.0.0.1:9003", "cpu", "bench-1b")]


def call(ok=True, ttft=0.01, latency=1.0, tokens=150, **fields) -> Call:
    fields.setdefault("headers", True)
    return Call(sent_at=0.0, ok=ok, status=200, ttft_s=ttft, latency_s=latency, tokens=tokens, **fields)


def test_the_generated_config_is_one_the_gateway_accepts():
    for affinity in (True, False):
        config = parse_config(gateway_config(FLEET, affinity=affinity).encode())
        assert [w.name for w in config.workers] == ["gpu-a", "gpu-b", "cpu-a"]
        assert [w.tier for w in config.workers] == ["gpu", "gpu", "cpu"]
        assert [w.gpu_index for w in config.workers] == [0, 0, None]
        assert {w.kind for w in config.workers} == {"llamacpp"}
        assert config.routing.affinity is affinity


def test_a_summary_separates_failures_before_and_after_the_first_token():
    calls = [call(), call(tokens=149),
             call(ok=False, ttft=None, error="HTTP 502"),  # answered, but nothing was generated
             Call(sent_at=0.0, error="timeout", timed_out=True),  # never answered
             call(ok=False, error="stream cut")]  # cut mid-stream
    s = summarise(calls, wall_s=2.0, expected_tokens=150)
    assert (s["sent"], s["ok"], s["failed"], s["timeouts"]) == (5, 2, 3, 1)
    assert s["failed_not_started"] == 2 and s["failed_before_headers"] == 1 and s["cut_after_first_token"] == 1
    assert s["tokens"] == 299 and s["tokens_per_s"] == 149.5
    assert s["tokens_per_answer"] == {"min": 149, "mean": 149.5, "max": 150}
    assert s["exact_length_share"] == 0.5
    assert summarise([], 1.0)["ttft_s"]["p99"] is None


def test_gateway_against_direct_gives_the_ratio_and_the_ttft_added():
    direct = summarise([call(ttft=0.010) for _ in range(10)], 10.0)
    gateway = summarise([call(ttft=0.011) for _ in range(9)] + [call(ttft=0.011, tokens=147)], 10.0)
    c = compare(direct, gateway)
    assert c["throughput_ratio"] == round(1497 / 1500, 4)
    assert c["ttft_added_p50_s"] == 0.001 and c["ttft_added_p99_s"] == 0.001


def test_goals_are_checked_at_every_level_and_gpu_busy_at_80_percent():
    def level(load, ratio, added, mean, busy):
        return {"load": load, "compare": {"throughput_ratio": ratio, "ttft_added_p99_s": added},
                "gateway": {"latency_s": {"mean": mean}}, "gateway_gpu_busy": busy}

    good = [level(0.5, 1.0, 0.001, 1.2, 0.5), level(0.8, 0.99, 0.0015, 1.5, 0.9), level(0.95, 0.985, 0.002, 1.9, 0.95)]
    assert all(s6_goals(good).values())
    bad = good[:2] + [level(0.95, 0.97, 0.003, 2.1, 0.95)]
    goals = s6_goals(bad)
    assert goals["throughput_ratio_ge_0.98"] is False and goals["ttft_added_p99_le_2ms"] is False
    assert goals["mean_150_token_answer_lt_2s"] is False and goals["gpu_busy_ge_80pct_at_80pct_load"] is True
    assert s6_goals([level(0.8, 1.0, 0.0, 1.0, None)])["gpu_busy_ge_80pct_at_80pct_load"] is None


def test_reuse_counts_cached_over_all_prompt_tokens_of_answers_that_report_them():
    calls = [call(cache_n=900, prompt_n=100), call(cache_n=0, prompt_n=1000), call(), call(ok=False, cache_n=5,
                                                                                          prompt_n=5)]
    assert reuse(calls) == {"answers_with_timings": 2, "cached_tokens": 900, "evaluated_tokens": 1100,
                            "reused_share": 0.45}
    assert reuse([])["reused_share"] is None


def test_nvidia_smi_csv_is_read_per_gpu():
    text = ("memory.used [MiB], memory.total [MiB], utilization.gpu [%]\n"
            "9021 MiB, 81559 MiB, 87 %\n4 MiB, 81559 MiB, 0 %\n")
    assert parse_smi(text) == [{"memory_used_mib": 9021.0, "memory_total_mib": 81559.0, "utilization_pct": 87.0},
                               {"memory_used_mib": 4.0, "memory_total_mib": 81559.0, "utilization_pct": 0.0}]
    assert parse_smi("") == [] and parse_smi("header\n[N/A], [N/A], [N/A]\n") == []


def test_a_short_budget_shortens_the_timed_phases_but_not_below_40_percent():
    assert scaled(GPU, planned_s(GPU) + 1) == GPU
    half = scaled(GPU, planned_s(GPU) / 2)
    assert abs(half.level_s - GPU.level_s / 2) < 1e-9 and half.loads == GPU.loads
    assert abs(scaled(GPU, 1).level_s - 0.4 * GPU.level_s) < 1e-9
    assert planned_s(SMOKE) < 60


def test_the_table_renders_a_partial_summary():
    text = render({"profile": "gpu", "skipped": {"s5": "budget"}, "s6": {"capacity": summarise([call()], 1.0),
                                                                        "levels": [], "goals": {}}})
    assert "S6 direct capacity" in text and "skipped s5: budget" in text
