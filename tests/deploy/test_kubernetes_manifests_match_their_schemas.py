"""deploy/kubernetes against the Kubernetes OpenAPI schemas shipped offline by kubernetes-validate
(strict: unknown fields are errors), the ServiceMonitor CRD's required fields checked here by hand,
and the wiring between objects (selectors, ports, the config volume, the probes)."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest

from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_tool

K8S_VERSION = "1.31"
KUBE = DEPLOY / "kubernetes"
BASES = ("base", "ollama-gpu-workers")


def resources(base: str) -> list[dict]:
    """What `kubectl kustomize` would emit, minus its transformers: every listed file's documents."""
    (kustomization,) = load_yaml_docs(KUBE / base / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    return [doc for name in kustomization["resources"] for doc in load_yaml_docs(KUBE / base / name)]


def by_kind(base: str) -> dict[str, dict]:
    out = {}
    for doc in resources(base):
        assert doc["kind"] not in out
        out[doc["kind"]] = doc
    return out


ALL = [(base, doc) for base in BASES for doc in resources(base)]
# CRDs (the ServiceMonitor) have no schema in the validator: test_service_monitor_* checks them by hand.
BUILTIN = [(base, doc) for base, doc in ALL if not doc["apiVersion"].startswith("monitoring.coreos.com/")]


def test_every_manifest_file_is_listed_in_its_kustomization():
    for base in BASES:
        (kustomization,) = load_yaml_docs(KUBE / base / "kustomization.yaml")
        files = {p.name for p in (KUBE / base).glob("*.yaml")} - {"kustomization.yaml"}
        assert files == set(kustomization["resources"])


@pytest.mark.parametrize("base,doc", BUILTIN, ids=[f"{b}/{d['kind']}/{d['metadata']['name']}" for b, d in BUILTIN])
def test_manifest_validates_against_the_kubernetes_schema(base, doc):
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{'.'.join(map(str, e.path))}: {e.message}")


def test_the_validator_rejects_an_unknown_field():
    deployment = by_kind("base")["Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_service_monitor_has_the_crd_required_fields():
    objs = by_kind("base")
    monitor, service = objs["ServiceMonitor"], objs["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"} and monitor["metadata"]["name"]
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector", "targetLabels", "podTargetLabels",
                         "sampleLimit"}
    labels = spec["selector"]["matchLabels"]  # required by the CRD
    assert all(service["metadata"]["labels"].get(k) == v for k, v in labels.items())
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "authorization"}
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert spec["jobLabel"] in service["metadata"]["labels"]


def test_gateway_deployment_probes_security_and_secret():
    objs = by_kind("base")
    deployment = objs["Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BEACON_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "beacon-gateway-admin"
    assert env["BEACON_LISTEN"]["value"] == "0.0.0.0:11434"
    assert env["BEACON_CONFIG"]["value"] == "/etc/beacon/config.toml"


def test_config_map_is_mounted_as_a_directory_so_updates_reach_the_pods():
    objs = by_kind("base")
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in container["volumeMounts"] if "configMap" in volumes[m["name"]]]
    assert mounts and all("subPath" not in m for m in mounts)
    (mount,) = mounts
    assert volumes[mount["name"]]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BEACON_CONFIG"] == mount["mountPath"] + "/config.toml"
    assert "config.toml" in objs["ConfigMap"]["data"]


def test_service_pdb_and_hpa_point_at_the_gateway():
    objs = by_kind("base")
    labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    (container,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    ports = {p["name"] for p in container["ports"]}
    assert objs["Service"]["spec"]["selector"].items() <= labels.items()
    assert all(p["targetPort"] in ports for p in objs["Service"]["spec"]["ports"])
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": objs["Deployment"]["metadata"]["name"]}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert objs["PodDisruptionBudget"]["spec"]["minAvailable"] < hpa["minReplicas"]


def test_gpu_workers_get_one_gpu_each_and_stable_names_the_gateway_lists():
    import tomllib

    objs = by_kind("ollama-gpu-workers")
    sts, service = objs["StatefulSet"], objs["Service"]
    assert service["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == service["metadata"]["name"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].startswith("ollama/ollama")
    config = tomllib.loads(by_kind("base")["ConfigMap"]["data"]["config.toml"])
    name = sts["metadata"]["name"]
    hosts = [f"{name}-{i}.{service['metadata']['name']}" for i in range(sts["spec"]["replicas"])]
    assert [w["url"] for w in config["workers"]] == [f"http://{h}:11434" for h in hosts]


@pytest.mark.parametrize("base", BASES)
def test_kustomize_builds_when_kubectl_is_here(base):
    kubectl = require_tool("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(KUBE / base)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import yaml

    built = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(d["kind"] for d in built) == sorted(d["kind"] for d in resources(base))
