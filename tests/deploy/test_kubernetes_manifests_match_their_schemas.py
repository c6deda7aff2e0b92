"""deploy/kubernetes against the Kubernetes OpenAPI schemas shipped offline by kubernetes-validate
(strict: unknown fields are errors), the ServiceMonitor CRD's required fields checked here by hand,
and the wiring between objects (selectors, ports, the config volume, the probes)."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest

from tests.deploy.conftest import DEPLOY, load_yaml_docs, require_tool, setting_env_names

K8S_VERSION = "1.31"
KUBE = DEPLOY / "kubernetes"
BASES = ("base", "ollama-gpu-workers")


def resources(base: str) -> list[dict]:
    """What `kubectl kustomize` would emit, minus its transformers: every listed file's documents."""
    (kustomization,) = load_yaml_docs(KUBE / base / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    return [doc for name in kustomization["resources"] for doc in load_yaml_docs(KUBE / base / name)]


def by_kind(base: str, app: str | None = None) -> dict[str, dict]:
    """One object per kind, of one app (app.kubernetes.io/name): in the base, the gateway's unless
    `app` names another (its Redis is a second Deployment and Service)."""
    app = app or ("beacon-gateway" if base == "base" else None)
    out = {}
    for doc in resources(base):
        if app and doc["metadata"]["labels"]["app.kubernetes.io/name"] != app:
            continue
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


def test_every_object_of_the_base_belongs_to_the_gateway_or_its_redis():
    apps = {doc["metadata"]["labels"]["app.kubernetes.io/name"] for doc in resources("base")}
    assert apps == {"beacon-gateway", "beacon-redis"}


def test_redis_is_one_pod_without_persistence_locked_down_like_the_gateway():
    redis, gateway = by_kind("base", "beacon-redis"), by_kind("base")
    spec = redis["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"  # never two Redis behind the Service
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert all("persistentVolumeClaim" not in v for v in pod.get("volumes", ()))
    (container,) = pod["containers"]
    assert container["image"].startswith("redis:7")
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert container["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert container["livenessProbe"]["tcpSocket"]["port"] == "redis"
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    (gateway_container,) = gateway["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"] == gateway_container["securityContext"]


def test_the_gateway_reaches_redis_through_its_service_and_nobody_else_does():
    from redis.connection import parse_url

    redis, gateway = by_kind("base", "beacon-redis"), by_kind("base")
    service, policy = redis["Service"], redis["NetworkPolicy"]
    redis_pod = redis["Deployment"]["spec"]["template"]
    gateway_pod = gateway["Deployment"]["spec"]["template"]
    (container,) = gateway_pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    url = parse_url(env["BEACON_REDIS_URL"])
    (port,) = service["spec"]["ports"]
    assert (url["host"], url["port"]) == (service["metadata"]["name"], port["port"])
    (redis_container,) = redis_pod["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in redis_container["ports"]}
    assert service["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    # The gateway's Service, PDB and HPA never count the Redis pod as a gateway, nor the other way round.
    assert not gateway["Service"]["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    assert not service["spec"]["selector"].items() <= gateway_pod["metadata"]["labels"].items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_pod["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"podSelector"}  # gateway pods of this namespace only
    assert source["podSelector"]["matchLabels"].items() <= gateway_pod["metadata"]["labels"].items()
    assert [p["port"] for p in rule["ports"]] == [port["targetPort"]]


def test_beacon_variables_are_gateway_settings_and_no_service_adds_its_own():
    names = setting_env_names()
    for base in BASES:
        for doc in resources(base):
            pod = doc.get("spec", {}).get("template", {}).get("spec")
            if not pod:
                continue
            for container in pod["containers"]:
                assert {e["name"] for e in container.get("env", ()) if e["name"].startswith("BEACON_")} <= names
    # Service links would put BEACON_REDIS_PORT=tcp://... and the like into the gateway's environment.
    assert by_kind("base")["Deployment"]["spec"]["template"]["spec"]["enableServiceLinks"] is False


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
