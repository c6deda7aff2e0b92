"""deploy/compose.yaml against the Compose Specification JSON schema (vendored in schemas/, validated
with jsonschema's Draft 2020-12 validator), plus the deployment rules the schema cannot express."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.deploy.conftest import DEPLOY, load_yaml_docs, setting_env_names

SCHEMA = json.loads((DEPLOY.parent / "tests/deploy/schemas/compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    (doc,) = load_yaml_docs(DEPLOY / "compose.yaml")
    return doc


def test_compose_file_validates_against_the_compose_spec_schema(compose):
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_catches_a_misspelt_key(compose):
    broken = {**compose, "services": {**compose["services"], "gateway": {**compose["services"]["gateway"],
                                                                         "port": ["11434:11434"]}}}
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(broken)


def test_only_gateway_prometheus_and_grafana_publish_ports_on_loopback_by_default(compose):
    publishing = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert publishing == {"gateway", "prometheus", "grafana"}
    for name in publishing:
        for port in compose["services"][name]["ports"]:
            assert port.startswith("${") and ":-127.0.0.1:" in port, (name, port)
    assert compose["services"]["gateway"]["ports"] == ["${BEACON_PUBLISH:-127.0.0.1:11434}:11434"]


def test_each_gpu_worker_reserves_exactly_one_nvidia_gpu(compose):
    ids = []
    for name in ("ollama-gpu0", "ollama-gpu1"):
        svc = compose["services"][name]
        assert "ollama/ollama" in svc["image"]
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and len(device["device_ids"]) == 1
        ids += device["device_ids"]
        assert "ports" not in svc
    assert sorted(ids) == ["0", "1"]
    cpu = compose["services"]["ollama-cpu"]
    assert "ports" not in cpu and "reservations" not in cpu.get("deploy", {}).get("resources", {})


REPLICAS = ("gateway-a", "gateway-b")


def test_each_gateway_replica_mounts_the_compose_config_and_is_locked_down(compose):
    for name in REPLICAS:
        gateway = compose["services"][name]
        assert "./config.compose.toml:/etc/beacon/config.toml:ro" in gateway["volumes"]
        assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]
        assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
        assert "/health/live" in " ".join(gateway["healthcheck"]["test"])
        assert "ports" not in gateway  # reached through HAProxy (`gateway`) and by Prometheus, on the compose networks


def test_the_replicas_share_state_through_a_redis_only_they_can_reach(compose):
    from redis.connection import parse_url

    services, networks = compose["services"], compose["networks"]
    redis = services["redis"]
    assert redis["image"].endswith(":-redis:7}") and "ports" not in redis
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["read_only"] is True and redis["cap_drop"] == ["ALL"] and redis["user"] != "0"
    (state,) = redis["networks"]
    assert networks[state]["internal"] is True
    assert {name for name, svc in services.items() if state in svc.get("networks", ())} == {"redis", *REPLICAS}
    for name in REPLICAS:
        url = parse_url(services[name]["environment"]["BEACON_REDIS_URL"])
        assert (url["host"], url["port"], url.get("db")) == ("redis", 6379, 0)
        # Redis is no hard dependency: a replica starts alone and joins when Redis answers.
        assert services[name]["depends_on"]["redis"]["condition"] == "service_started"


def test_haproxy_fronts_exactly_the_replicas_and_prometheus_scrapes_each_one(compose):
    services = compose["services"]
    front = services["gateway"]
    assert "haproxy" in front["image"] and "build" not in front
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in front["volumes"]
    assert front["read_only"] is True and front["cap_drop"] == ["ALL"]
    cfg = (DEPLOY / "haproxy/haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+)", cfg, re.M)
    listen = {services[name]["environment"]["BEACON_LISTEN"].rpartition(":")[2] for name in REPLICAS}
    assert sorted(set(servers)) == [(name, f"{name}:{port}") for name in REPLICAS for port in listen]
    assert re.search(r"^\s*bind :11434$", cfg, re.M)  # the port `ports:` publishes
    assert all(set(services[name]["networks"]) & set(front["networks"]) for name in REPLICAS)
    (prometheus,) = load_yaml_docs(DEPLOY / "prometheus/prometheus.yml")
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "beacon-gateway"]
    (static,) = job["static_configs"]
    assert sorted(static["targets"]) == [f"{name}:11434" for name in REPLICAS]


def test_every_beacon_variable_in_the_compose_file_is_a_gateway_setting(compose):
    names = setting_env_names()
    for service in compose["services"].values():
        env = service.get("environment") or {}
        assert {k for k in env if k.startswith("BEACON_")} <= names


def test_the_config_names_the_compose_services():
    import tomllib

    config = tomllib.loads((DEPLOY / "config.compose.toml").read_text())
    (compose,) = load_yaml_docs(DEPLOY / "compose.yaml")
    for worker in config["workers"]:
        host = worker["url"].split("//")[1].split(":")[0]
        assert host in compose["services"], host


def test_prometheus_and_grafana_get_their_provisioning(compose):
    assert "./prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]
    grafana = compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert any(v.startswith("./grafana/beacon-dashboard.json:") for v in grafana)
    for mount in [*compose["services"]["prometheus"]["volumes"], *grafana]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), source


def test_bench_client_is_an_optional_profile(compose):
    bench = compose["services"]["bench"]
    assert bench["profiles"] == ["bench"]
    assert bench["environment"]["OLLAMA_BASE_URL"] == "http://gateway:11434"
    assert bench["build"]["dockerfile"] == "deploy/Dockerfile.bench"
