"""Prometheus config and alert rules through promtool (Debian's `prometheus` package; .ci/run installs
it and sets CI_REQUIRE_TOOLS=1 so a missing promtool fails instead of skipping): `check config`,
`check rules`, and `test rules` on tests/deploy/rules_test.yml (unit tests of five alerts)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_tool

HERE = Path(__file__).parent
WANTED = {"BeaconGatewayDown", "BeaconNoWorkerUp", "BeaconGpuWorkerDegraded", "BeaconFailoverRateHigh",
          "BeaconTimeoutRateHigh", "BeaconQueueSaturated", "BeaconConfigReloadFailed"}


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
