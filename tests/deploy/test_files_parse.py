"""Every YAML and JSON file under deploy/ parses, and the images are built as the brief says."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from gateway.config import parse_config
from tests.deploy.conftest import DEPLOY, ROOT, load_yaml_docs

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
JSON_FILES = sorted(DEPLOY.rglob("*.json"))


def test_deploy_has_the_expected_files():
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    for want in ("Dockerfile", "Dockerfile.bench", "compose.yaml", "config.compose.toml", "gateway.service",
                 "prometheus/prometheus.yml", "prometheus/rules.yml", "grafana/beacon-dashboard.json",
                 "kubernetes/base/kustomization.yaml", "kubernetes/ollama-gpu-workers/statefulset.yaml"):
        assert want in names
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path):
    assert load_yaml_docs(path)


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_json_parses(path):
    assert json.loads(path.read_text())


def test_the_compose_routing_config_is_valid_for_the_gateway():
    config = parse_config((DEPLOY / "config.compose.toml").read_bytes())
    tiers = sorted(w.tier for w in config.workers)
    assert tiers == ["cpu", "gpu", "gpu"]
    assert config.server.config_poll_s > 0


def test_the_kubernetes_routing_config_is_valid_for_the_gateway():
    docs = load_yaml_docs(DEPLOY / "kubernetes/base/configmap.yaml")
    text = docs[0]["data"]["config.toml"]
    tomllib.loads(text)
    config = parse_config(text.encode())
    assert [w.url for w in config.workers] == ["http://ollama-gpu-0.ollama-gpu:11434",
                                               "http://ollama-gpu-1.ollama-gpu:11434"]


def _instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_gateway_dockerfile_is_multi_stage_non_root_and_checks_liveness():
    steps = _instructions(DEPLOY / "Dockerfile")
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    assert any(word == "ARG" and args == "PYTHON_IMAGE=python:3.11-slim" for word, args in steps)
    assert ("EXPOSE", "11434") in steps
    env = " ".join(args for word, args in steps if word == "ENV")
    for setting in ("BEACON_LISTEN=0.0.0.0:11434", "BEACON_CONFIG=/etc/beacon/config.toml", "BEACON_LOG_FORMAT=json"):
        assert setting in env
    user = [args for word, args in steps if word == "USER"]
    assert user and not user[-1].startswith(("0", "root"))
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert all(word != "RUN" for word, _ in steps[last_user:])  # nothing runs as root after USER
    health = [args for word, args in steps if word == "HEALTHCHECK"]
    assert health and "/health/live" in health[0] and "urllib" in health[0] and "curl" not in health[0]
    assert ("ENTRYPOINT", '["beacon-gateway"]') in steps
    assert ("CMD", '["serve"]') in steps


def test_bench_dockerfile_runs_bench_against_ollama_base_url():
    steps = _instructions(DEPLOY / "Dockerfile.bench")
    assert ("ENTRYPOINT", '["beacon-gateway", "bench"]') in steps
    assert any(word == "ENV" and "OLLAMA_BASE_URL=" in args for word, args in steps)
    assert any(word == "USER" for word, _ in steps)


def test_dockerignore_keeps_what_the_build_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copied = set()
    for dockerfile in ("Dockerfile", "Dockerfile.bench"):
        for word, args in _instructions(DEPLOY / dockerfile):
            if word == "COPY" and "--from" not in args:
                copied.update(args.split()[:-1])
    assert copied == {"pyproject.toml", "README.md", "gateway", "backends"}
    for path in copied:
        assert path not in ignored and (ROOT / path).exists()
    assert ".git" in ignored and "tests" in ignored
    assert "!pyproject.toml" in ignored  # *.toml is ignored (local configs may hold secrets), pyproject is not


def test_a_missing_tool_fails_instead_of_skipping_when_ci_requires_tools(monkeypatch):
    from _pytest.outcomes import Failed, Skipped

    from tests.deploy.conftest import require_tool

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI_REQUIRE_TOOLS", "1")
    with pytest.raises(Failed):
        require_tool("promtool")
    monkeypatch.delenv("CI_REQUIRE_TOOLS")
    with pytest.raises(Skipped):
        require_tool("promtool")
