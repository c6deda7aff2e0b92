"""Every metric name the alert rules and the Grafana dashboard use is one the real gateway exports:
the gateway runs against simulated workers (tests/conftest.py start_fleet, with a fake NVML reader so
the beacon_gpu_* families appear), serves a request, and /metrics is scraped and compared. Label
values the rules and panels match on (outcome, state, reason, result, kind, tier, mode) are checked
against the values the code writes."""

from __future__ import annotations

import json
import re

from gateway.config import AdmissionConfig
from gateway.gpu import GpuReading, GpuStatus
from gateway.metrics import CLUSTER_MODES, FAILOVER_REASONS, STATES
from gateway.outcome import Kind
from tests.conftest import WorkerSpec
from tests.deploy.conftest import DEPLOY, load_yaml_docs

NAME = re.compile(r"\b((?:beacon|process)_[a-z0-9_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r'\b(outcome|state|reason|result|kind|tier|mode)\s*=~?\s*"([^"]+)"')
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def rule_exprs() -> list[str]:
    (rules,) = load_yaml_docs(DEPLOY / "prometheus/rules.yml")
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana/beacon-dashboard.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]


def used_names() -> set[str]:
    names = set()
    for expr in rule_exprs() + dashboard_exprs():
        # Drop label matchers and strings so label names and values are not taken for metrics.
        bare = re.sub(r'\{[^}]*\}|"[^"]*"', " ", expr)
        bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
        names.update(NAME.findall(bare))
    return names


class OneGpu:
    def read(self, indices):
        return GpuStatus(True, "", {i: GpuReading(i, True, 80 * 1024**3, 20 * 1024**3, "Fake H100", 40,
                                                  temperature_c=55, power_watts=210.5) for i in indices})


def exported(text: str) -> set[str]:
    """Sample names and family names (# TYPE lines: a labelled counter with no child yet has no sample)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def known(name: str, names: set[str]) -> bool:
    if name in names or name == "up" or name.startswith("process_"):
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in SUFFIXES)


def test_the_rules_and_the_dashboard_use_names_the_expression_parser_finds():
    names = used_names()
    assert {"beacon_requests_total", "beacon_worker_up", "beacon_config_reloads_total", "up",
            "beacon_time_to_first_token_seconds_bucket", "beacon_gpu_utilization_ratio", "beacon_cluster_mode",
            "beacon_cluster_replicas", "beacon_cluster_sync_failures_total"} <= names
    assert not {"le", "worker", "model", "instance"} & names


async def test_every_metric_name_used_by_rules_and_dashboard_is_exported(start_fleet):
    fleet = await start_fleet(WorkerSpec("gpu0", extra_toml="gpu_index = 0\n"), WorkerSpec("cpu0", tier="cpu"),
                              gpu_reader=OneGpu())
    await fleet.gateway.gpus.step()
    async with fleet.post("/api/generate", {"model": "llama3.2:1b", "prompt": "x", "stream": False,
                                            "options": {"num_predict": 4}}) as resp:
        assert resp.status == 200
    await fleet.probe()
    async with fleet.get("/metrics") as resp:
        assert resp.status == 200
        names = exported(await resp.text())
    assert "beacon_gpu_utilization_ratio" in names  # the fake NVML reader took effect
    missing = sorted(n for n in used_names() if not known(n, names))
    assert missing == []


def _outcomes_in_code() -> set[str]:
    return {kind.value for kind in Kind}  # the outcome label is one of these: gateway/outcome.py


def test_label_values_matched_by_rules_and_dashboard_are_ones_the_gateway_writes():
    allowed = {"outcome": _outcomes_in_code(), "state": set(STATES), "reason": set(FAILOVER_REASONS),
               "result": {"ok", "unchanged", "failed"}, "kind": {"total", "used", "free"}, "tier": {"gpu", "cpu"},
               "mode": set(CLUSTER_MODES)}
    assert "timeout" in allowed["outcome"]
    for expr in rule_exprs() + dashboard_exprs():
        for label, value in SELECTOR.findall(expr):
            if label == "reason" and "model_loads" in expr:
                continue
            assert value in allowed[label], (label, value, expr)


def test_queue_alert_threshold_follows_the_max_queue_the_gateway_exports():
    rule = next(r for g in load_yaml_docs(DEPLOY / "prometheus/rules.yml")[0]["groups"] for r in g["rules"]
                if r.get("alert") == "BeaconQueueSaturated")
    assert "0.8 * scalar(max(beacon_admission_max_queue))" in rule["expr"]
    assert AdmissionConfig().max_queue == 64  # rules_test.yml's queue case assumes the default

