"""deploy/k8s and deploy/kustomization.yaml, kept in step with docker-compose.yml.

Both describe one deployment: the same image and commands, the same settings by name and value,
the same data path and ports, Redis with the same config file, and a GPU for each worker.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import Dockerfile
from tests.deploy.files import REPO, compose_default, load_compose, load_manifests, seconds

COMPOSE = load_compose(REPO / "docker-compose.yml")["services"]
KUSTOMIZATION = yaml.safe_load((REPO / "deploy" / "kustomization.yaml").read_text())
OBJECTS = load_manifests(REPO / "deploy" / "k8s")
IMAGE_USER = [i for i in Dockerfile((REPO / "Dockerfile").read_text()).instructions if i.keyword == "USER"]
ROLES = ("api", "worker")


def _pod(kind: str, name: str) -> dict[str, Any]:
    return OBJECTS[(kind, name)]["spec"]["template"]["spec"]


def _container(kind: str, name: str) -> dict[str, Any]:
    (container,) = _pod(kind, name)["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_kustomization_applies_every_manifest_and_builds_redis_config_from_the_compose_file() -> None:
    listed = {(REPO / "deploy" / path).resolve() for path in KUSTOMIZATION["resources"]}
    assert listed == {p.resolve() for p in (REPO / "deploy" / "k8s").glob("*.yaml")}
    (generator,) = KUSTOMIZATION["configMapGenerator"]
    assert generator["files"] == ["redis.conf"]  # deploy/redis.conf, the file compose mounts
    assert COMPOSE["redis"]["volumes"][1].startswith("./deploy/redis.conf:")
    config_volume = next(v for v in _pod("StatefulSet", "redis")["volumes"] if "configMap" in v)
    assert config_volume["configMap"]["name"] == generator["name"]


def test_workloads_are_named_as_the_compose_services() -> None:
    workloads = {name for kind, name in OBJECTS if kind in {"Deployment", "StatefulSet"}}
    assert workloads == {"redis", "api", "worker"}
    assert workloads <= set(COMPOSE)


def test_redis_runs_the_same_image_command_config_and_data_path() -> None:
    container = _container("StatefulSet", "redis")
    assert container["image"] == COMPOSE["redis"]["image"]
    assert container["command"] == COMPOSE["redis"]["command"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_path = COMPOSE["redis"]["command"][1]
    assert config_path == f"{mounts['redis-config']}/redis.conf"
    assert mounts["redis-data"] == "/data"  # redis.conf's dir
    (claim,) = OBJECTS[("StatefulSet", "redis")]["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "redis-data"
    assert container["readinessProbe"]["exec"]["command"] == COMPOSE["redis"]["healthcheck"]["test"][1:]
    service = OBJECTS[("Service", "redis")]
    assert service["spec"]["ports"][0]["port"] == 6379


@pytest.mark.parametrize("role", ROLES)
def test_api_and_worker_run_the_compose_image_and_command(role: str) -> None:
    container = _container("Deployment", role)
    assert container["image"] == compose_default(COMPOSE[role]["image"])
    assert container["args"] == COMPOSE[role]["command"]  # the image's ENTRYPOINT is tdmi
    assert "command" not in container


@pytest.mark.parametrize("role", ROLES)
def test_settings_have_the_same_names_and_values(role: str) -> None:
    container = _container("Deployment", role)
    assert _env(container) == COMPOSE[role]["environment"]
    # compose's env_file is the Secret made from the same file
    assert COMPOSE[role]["env_file"] == "tdmi.env"
    assert container["envFrom"] == [{"secretRef": {"name": "tdmi-env"}}]


@pytest.mark.parametrize("role", ROLES)
def test_uploads_and_results_live_on_one_shared_claim_at_the_same_path(role: str) -> None:
    container = _container("Deployment", role)
    (mount,) = container["volumeMounts"]
    (volume,) = _pod("Deployment", role)["volumes"]
    assert mount["name"] == volume["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == "tdmi-data"
    compose_target = COMPOSE[role]["volumes"][0].split(":")
    assert compose_target == ["tdmi-data", mount["mountPath"]]
    claim = OBJECTS[("PersistentVolumeClaim", "tdmi-data")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes write to it


@pytest.mark.parametrize("role", ROLES)
def test_ports_probes_and_metrics_match_compose(role: str) -> None:
    container = _container("Deployment", role)
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 8000}
    if role == "api":
        assert COMPOSE["api"]["ports"][0].endswith(f":{port['containerPort']}")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # as the image's HEALTHCHECK
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service = OBJECTS[("Service", role)]
    assert service["spec"]["selector"] == OBJECTS[("Deployment", role)]["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    annotations = OBJECTS[("Deployment", role)]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_workers_have_a_headless_service_for_per_pod_scraping() -> None:
    assert OBJECTS[("Service", "worker")]["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in OBJECTS[("Service", "api")]["spec"]


def test_each_worker_requests_one_gpu_and_the_api_none() -> None:
    resources = _container("Deployment", "worker")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    compose_gpu = COMPOSE["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert compose_gpu["count"] == resources["limits"]["nvidia.com/gpu"]
    assert _env(_container("Deployment", "worker"))["TDMI_DEVICE"].startswith("cuda")
    assert "nvidia.com/gpu" not in str(_container("Deployment", "api")["resources"])


@pytest.mark.parametrize("role", ROLES)
def test_pods_stop_as_gracefully_as_compose_lets_containers(role: str) -> None:
    grace = _pod("Deployment", role)["terminationGracePeriodSeconds"]
    assert grace == seconds(COMPOSE[role]["stop_grace_period"])


@pytest.mark.parametrize("role", ROLES)
def test_pods_run_as_the_image_user_without_privileges(role: str) -> None:
    (user,) = IMAGE_USER
    uid, gid = (int(part) for part in user.arguments.split(":"))
    security = _pod("Deployment", role)["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (uid, gid, gid)
    container_security = _container("Deployment", role)["securityContext"]
    assert container_security["allowPrivilegeEscalation"] is False
    assert container_security["capabilities"]["drop"] == ["ALL"]
