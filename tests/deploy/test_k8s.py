"""deploy/k8s: the Kustomize base and the development overlay render to valid Kubernetes objects
(checked against the Kubernetes JSON schemas shipped by kubernetes-validate, offline) that wire
the services as the suite needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kustomize_render import MERGE_KEYS, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
DEVELOPMENT = K8S / "overlays" / "development"
# The oldest Kubernetes we claim to support and the newest the schemas know.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
SERVICES = {
    "gateway": 8001,
    "tickets": 8101,
    "agents": 8102,
    "sla": 8103,
    "scoring": 8104,
    "ai-proxy": 8105,
}
WITH_DATABASE = {"tickets", "agents", "sla", "scoring", "ai-proxy"}
# `<service>-consume`: the consumers, outbox relay and jobs of each service with a database
CONSUMERS = {f"{name}-consume": name for name in WITH_DATABASE}

pytestmark = pytest.mark.unit


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def development() -> list[dict[str, Any]]:
    return render(DEVELOPMENT)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", [BASE, DEVELOPMENT], ids=["base", "development"])
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(overlay, version) -> None:
    # given the rendered kustomization
    resources = render(overlay)
    errors = []
    for resource in resources:
        # when each object is validated strictly (unknown fields are errors)
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            errors.append(
                f"{resource['kind']}/{resource['metadata']['name']} {where}: {error.message}"
            )
    # then none is invalid
    assert not errors, "\n".join(errors)


def test_base_runs_every_service_with_a_service_and_an_autoscaler(base) -> None:
    # given the base
    deployments, services, hpas = (
        by_kind(base, k) for k in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
    # then each service has all three, the HPA scaling its Deployment, the Service its port;
    # its consumers a Deployment and an HPA of their own, no Service (they answer no API)
    assert set(deployments) == set(SERVICES) | set(CONSUMERS)
    assert set(services) == set(SERVICES)
    assert set(hpas) == set(SERVICES) | set(CONSUMERS)
    for name, service in CONSUMERS.items():
        target = hpas[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        # at most one member per partition does work (KAFKA_TOPIC_PARTITIONS, 3)
        assert 1 <= hpas[name]["spec"]["minReplicas"] <= hpas[name]["spec"]["maxReplicas"] <= 3
        (container,) = pod_spec(deployments[name])["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["PROCESS_ROLE"] == "consume"
        assert env["CONSUME_PORT"] == str(SERVICES[service])
        (serving,) = pod_spec(deployments[service])["containers"]
        assert {"name": "PROCESS_ROLE", "value": "serve"} in serving["env"]
    for name, port in SERVICES.items():
        target = hpas[name]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert hpas[name]["spec"]["minReplicas"] >= 2
        assert services[name]["spec"]["ports"][0]["port"] == port


def test_every_deployment_has_probes_requests_and_runs_as_non_root(base, development) -> None:
    for resource in [*base, *development]:
        if resource["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = resource["metadata"]["name"]
        spec = pod_spec(resource)
        for container in spec["containers"]:
            # then each container is probed for liveness and readiness and requests resources
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"].get("limits", {}), name
        if name in SERVICES or name in CONSUMERS or name == "standin":
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] != 0, name


def test_service_probes_use_the_health_endpoints_on_the_service_port(base) -> None:
    for name, deployment in by_kind(base, "Deployment").items():
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        # then liveness asks /health/live, readiness /health/ready, on the port the service binds
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        service = CONSUMERS.get(name, name)
        assert ports[container["readinessProbe"]["httpGet"]["port"]] == SERVICES[service]
        assert env["PORT"] == str(SERVICES[service])
        assert container["image"].startswith(f"quimbi/{service}:")


def test_services_with_a_database_migrate_in_an_init_container_before_they_start(base) -> None:
    for name, deployment in by_kind(base, "Deployment").items():
        spec = pod_spec(deployment)
        init = spec.get("initContainers", [])
        name = CONSUMERS.get(name, name)
        if name not in WITH_DATABASE:
            assert not init, name
            continue
        # then the init container runs the same image's `migrate` with the service's database
        (migrate,) = init
        assert migrate["args"] == ["migrate"]
        assert migrate["image"] == spec["containers"][0]["image"]
        secret_keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in migrate["env"]}
        assert secret_keys["DATABASE_URL"] == f"{name}-database-url"


def test_services_select_their_pods_and_target_a_named_container_port(base, development) -> None:
    for resources in (base, development):
        workloads = {**by_kind(resources, "Deployment"), **by_kind(resources, "StatefulSet")}
        for name, service in by_kind(resources, "Service").items():
            selector = service["spec"]["selector"]
            matching = [
                w
                for w in workloads.values()
                if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            # then exactly one workload backs it, and it names the target port
            assert len(matching) == 1, name
            port_names = {
                p["name"] for c in pod_spec(matching[0])["containers"] for p in c["ports"]
            }
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in port_names, name


def test_every_secret_and_config_reference_resolves_in_the_development_overlay(development) -> None:
    secrets = by_kind(development, "Secret")
    config_maps = by_kind(development, "ConfigMap")
    for resource in development:
        if resource["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = pod_spec(resource)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:  # then the secret exists in the overlay and has the key
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (
                        env,
                        resource["metadata"],
                    )
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps


def test_development_overlay_is_one_namespace_with_infrastructure_and_the_stand_in(
    development,
) -> None:
    namespaces = {r["metadata"].get("namespace") for r in development if r["kind"] != "Namespace"}
    assert namespaces == {"quimbi-dev"}
    workloads = {**by_kind(development, "Deployment"), **by_kind(development, "StatefulSet")}
    assert {"postgres", "redis", "kafka", "standin", *SERVICES, *CONSUMERS} == set(workloads)
    for name in [*SERVICES, *CONSUMERS]:
        assert workloads[name]["spec"]["replicas"] == 1
    config = by_kind(development, "ConfigMap")["quimbi-config"]["data"]
    assert config["QUIMBI_BASE_URL"] == "http://standin:8199"
    assert config["ENVIRONMENT"] == "development"
    images = {c["image"] for w in workloads.values() for c in pod_spec(w)["containers"]}
    assert {"postgres:16", "redis:7"} <= images
    assert any(image.startswith("apache/kafka:") for image in images)


def normalised(resources: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    """Objects by identity, keyed lists in merge-key order (kustomize may reorder them)."""

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            items = [walk(v) for v in value]
            if key in MERGE_KEYS and all(isinstance(i, dict) for i in items):
                items.sort(key=lambda item: str(item.get(MERGE_KEYS[key])))
            return items
        return value

    return {
        (r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): walk(r)
        for r in resources
    }


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", [BASE, DEVELOPMENT], ids=["base", "development"])
def test_python_renderer_agrees_with_kubectl_kustomize(overlay) -> None:
    # given kubectl's own kustomize
    output = subprocess.run(
        ["kubectl", "kustomize", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    expected = [doc for doc in yaml.safe_load_all(output) if doc]
    # then the renderer the other tests use produces the same objects
    assert normalised(render(overlay)) == normalised(expected)
