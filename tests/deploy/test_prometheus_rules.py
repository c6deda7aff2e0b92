"""Prometheus config and alert rules through promtool (Debian's `prometheus` package; .ci/run installs
it and sets CI_REQUIRE_TOOLS=1 so a missing promtool fails instead of skipping): `check config`,
`check rules`, and `test rules` on tests/deploy/rules_test.yml (unit tests of seven alerts)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_tool

HERE = Path(__file__).parent
WANTED = {"BeaconGatewayDown", "BeaconNoWorkerUp", "BeaconGpuWorkerDegraded", "BeaconFailoverRateHigh",
          "BeaconTimeoutRateHigh", "BeaconQueueSaturated", "BeaconConfigReloadFailed", "BeaconReplicaInLocalMode"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = require_tool("promtool")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules():
    out = promtool("check", "rules", str(DEPLOY / "prometheus/rules.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(WANTED)} rules found" in out.stdout + out.stderr


def test_promtool_checks_the_prometheus_config_and_the_rules_it_loads():
    out = promtool("check", "config", str(DEPLOY / "prometheus/prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout + out.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    out = promtool("test", "rules", str(HERE / "rules_test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    (tests,) = load_yaml_docs(HERE / "rules_test.yml")
    tested = {case["alertname"] for group in tests["tests"] for case in group.get("alert_rule_test", ())}
    assert len(tested) >= 2


def test_every_wanted_alert_is_defined_with_severity_and_summary():
    (rules,) = load_yaml_docs(DEPLOY / "prometheus/rules.yml")
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == WANTED
    for alert in alerts.values():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_every_dashboard_expression_parses_as_promql(tmp_path):
    """Grafana shows a panel with a typo as empty, silently: promtool parses each one as a recording rule."""
    dash = json.loads((DEPLOY / "grafana/beacon-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", ())]
    rules = [{"record": f"dashboard:panel_{i}", "expr": e.replace("$__rate_interval", "5m")}
             for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in out.stdout + out.stderr


def test_the_replica_mode_panel_maps_each_replica_to_its_worst_mode(tmp_path):
    """The panel's value mappings read 0 alone, 1 shared, 2 local: promtool evaluates its expression on
    a replica that loses Redis, a lone one, and one of two processes of which one is local."""
    dash = json.loads((DEPLOY / "grafana/beacon-dashboard.json").read_text())
    (panel,) = [p for p in dash["panels"] if p["title"] == "Replica mode"]
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    assert {k: v["text"] for k, v in mapping["options"].items()} == {"0": "alone", "1": "shared", "2": "local"}
    (target,) = panel["targets"]

    def modes(instance: str, process: str, local: str, shared: str, alone: str) -> list[dict]:
        return [{"series": f'beacon_cluster_mode{{instance="{instance}", process="{process}", mode="{m}"}}',
                 "values": v} for m, v in (("local", local), ("shared", shared), ("alone", alone))]

    series = [*modes("a", "0", "0 1", "1 0", "0 0"), *modes("c", "0", "0 0", "0 0", "1 1"),
              *modes("p", "0", "0 0", "1 1", "0 0"), *modes("p", "1", "0 1", "1 0", "0 0")]

    def at(minute: int, **want: int) -> dict:
        return {"expr": target["expr"], "eval_time": f"{minute}m",
                "exp_samples": [{"labels": f'{{instance="{i}"}}', "value": v} for i, v in want.items()]}

    test = {"rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "promql_expr_test": [at(0, a=1, c=0, p=1), at(1, a=2, c=0, p=2)]}]}
    path = tmp_path / "panel_test.yml"
    path.write_text(yaml.safe_dump(test))
    out = promtool("test", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr

