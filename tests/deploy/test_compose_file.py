"""docker-compose.yml and its overrides, parsed and checked without a Docker engine.

CI has no Docker (not even `docker compose config`), so the files are read as YAML and held
to what the deployment promises: the services and volumes, health-ordered start, a GPU per
worker, workers that scale, Redis that persists, settings that exist.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tdmi.service.config import Settings
from tests.deploy.files import (
    REPO,
    Reset,
    compose_default,
    env_file_lines,
    load_compose,
    redis_directives,
)

COMPOSE = load_compose(REPO / "docker-compose.yml")
SERVICES: dict[str, Any] = COMPOSE["services"]
CPU = load_compose(REPO / "deploy" / "compose.cpu.yml")
MULTIHOST = load_compose(REPO / "deploy" / "compose.multihost.yml")
ENV_EXAMPLE = REPO / "deploy" / "tdmi.env.example"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Short-syntax volumes of a service as {container path: source}."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def test_services_and_named_volumes() -> None:
    assert {"redis", "api", "worker"} <= set(SERVICES)
    assert set(SERVICES) - {"redis", "api", "worker"} == {"prometheus"}
    assert SERVICES["prometheus"]["profiles"] == ["monitoring"]  # started only when asked for
    assert {"redis-data", "tdmi-data"} <= set(COMPOSE["volumes"])


def test_api_and_worker_run_one_image_built_here_with_the_package_version() -> None:
    api, worker = SERVICES["api"], SERVICES["worker"]
    assert api["image"] == worker["image"]
    assert compose_default(api["image"]) == f"tdmi-pose:{VERSION}"
    for service in (api, worker):
        assert service["build"]["context"] == "."
        assert service["build"]["args"]["VARIANT"] == "gpu"
    assert api["command"] == ["serve"] and worker["command"] == ["worker"]


def test_start_order_waits_for_a_healthy_redis() -> None:
    for name in ("api", "worker"):
        assert SERVICES[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_redis_is_pinned_loads_our_config_and_keeps_its_data_on_a_volume() -> None:
    redis = SERVICES["redis"]
    assert re.fullmatch(r"redis:7\.\d+-alpine", redis["image"])
    mounts = _mounts(redis)
    assert mounts["/data"] == "redis-data"
    config_path = redis["command"][1]
    assert redis["command"] == ["redis-server", config_path]
    assert (REPO / mounts[config_path]).resolve() == REPO / "deploy" / "redis.conf"
    assert "ports" not in redis  # reachable inside the network only (compose.multihost.yml publishes it)


def test_redis_config_persists_every_second_and_never_evicts_job_state() -> None:
    directives = redis_directives(REPO / "deploy" / "redis.conf")
    assert directives["appendonly"] == ["yes"]
    assert directives["appendfsync"] == ["everysec"]
    assert directives["dir"] == ["/data"]  # the redis-data volume's mount point
    assert directives["maxmemory-policy"] == ["noeviction"]


def test_api_and_workers_share_the_data_volume_at_the_image_data_dir() -> None:
    for name in ("api", "worker"):
        assert _mounts(SERVICES[name]) == {"/data": "tdmi-data"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "TDMI_DATA_DIR=/data" in dockerfile


def test_workers_reach_redis_by_its_service_name() -> None:
    for name in ("api", "worker"):
        url = SERVICES[name]["environment"]["TDMI_REDIS_URL"]
        assert url == "redis://redis:6379/0"


def test_only_the_api_publishes_a_port_so_workers_scale() -> None:
    api, worker = SERVICES["api"], SERVICES["worker"]
    assert [compose_default(p) for p in api["ports"]] == ["8000:8000"]
    assert api["ports"][0].endswith(":8000")  # the image's TDMI_PORT
    # `docker compose up --scale worker=N` fails on a fixed host port or container name
    assert "ports" not in worker and "container_name" not in worker
    assert "container_name" not in api


def test_each_worker_reserves_an_nvidia_gpu_and_uses_it() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["environment"]["TDMI_DEVICE"] == "cuda:0"
    assert "deploy" not in SERVICES["api"]  # the API node needs no GPU


def test_the_cpu_override_builds_the_cpu_image_and_drops_the_gpu() -> None:
    services = CPU["services"]
    assert set(services) == {"api", "worker"}
    for name in ("api", "worker"):
        assert services[name]["build"]["args"]["VARIANT"] == "cpu"
        assert compose_default(services[name]["image"]) == f"tdmi-pose:{VERSION}-cpu"
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert isinstance(devices, Reset) and devices.tag == "!reset"
    assert services["worker"]["environment"]["TDMI_DEVICE"] == "cpu"


def test_the_multihost_override_locks_redis_and_shares_data_over_nfs() -> None:
    services = MULTIHOST["services"]
    redis_command = services["redis"]["command"]
    assert redis_command[:2] == SERVICES["redis"]["command"]
    assert redis_command[2] == "--requirepass"
    password = redis_command[3]
    assert password.startswith("${REDIS_PASSWORD:?")  # compose refuses to start without one
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == password  # the health check logs in
    for name in ("api", "worker"):
        assert services[name]["environment"]["TDMI_REDIS_URL"].startswith(f"redis://:{password}@")
    volume = MULTIHOST["volumes"]["tdmi-data"]
    assert volume["driver_opts"]["type"] == "nfs"


def test_prometheus_finds_the_api_and_every_worker_by_dns() -> None:
    prometheus = SERVICES["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prometheus["image"])
    config_file = _mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((REPO / config_file).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    discovered = {}
    for job in jobs.values():
        (sd,) = job["dns_sd_configs"]
        assert sd["type"] == "A" and sd["port"] == 8000
        discovered.update(dict.fromkeys(sd["names"], job["job_name"]))
    assert set(discovered) == {"api", "worker"}  # the compose service names: one A record per container
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())


def _readme_section() -> str:
    """The README's deployment section: it names settings too."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Deployment: several workers over Redis")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_readme_says_the_images_were_not_built_here() -> None:
    assert "**The images were not built here.**" in _readme_section()


def test_every_tdmi_variable_named_in_the_deployment_is_a_setting() -> None:
    files = [
        REPO / "docker-compose.yml",
        REPO / "Dockerfile",
        *(REPO / "deploy").rglob("*.y*ml"),
        ENV_EXAMPLE,
    ]
    texts = [path.read_text() for path in files] + [_readme_section()]
    names = set().union(*(re.findall(r"\bTDMI_[A-Z_]+\b", text) for text in texts))
    assert {"TDMI_REDIS_URL", "TDMI_DEVICE", "TDMI_API_KEYS", "TDMI_DATA_DIR"} <= names
    # compose-only knobs: interpolated into the compose files, never passed to the service
    compose_only = {"TDMI_IMAGE", "TDMI_IMAGE_CPU", "TDMI_API_PORT", "TDMI_PROMETHEUS_PORT"}
    compose_only |= {"TDMI_REDIS_HOST", "TDMI_REDIS_PUBLISH", "TDMI_NFS_SERVER", "TDMI_NFS_EXPORT"}
    for name in names - compose_only:
        assert name.removeprefix("TDMI_").lower() in Settings.model_fields, f"{name} is not a setting"
    for name in compose_only:
        assert name.removeprefix("TDMI_").lower() not in Settings.model_fields, f"{name} shadows a setting"


def test_the_example_settings_file_loads_and_its_examples_are_valid(tmp_path: Path) -> None:
    active = env_file_lines(ENV_EXAMPLE, commented=False)
    assert set(active) == {"TDMI_API_KEYS", "TDMI_LOG_FORMAT"}
    settings = Settings(_env_file=ENV_EXAMPLE)
    assert len(settings.api_keys) == 1 and "replace-me" in settings.api_keys[0].get_secret_value()
    assert settings.log_format == "json"
    examples = env_file_lines(ENV_EXAMPLE, commented=True)
    assert {"TDMI_BACKEND", "TDMI_PRECISION", "TDMI_MODELS", "TDMI_JOB_CLAIM_IDLE_S"} <= set(examples)
    uncommented = tmp_path / "tdmi.env"
    uncommented.write_text("".join(f"{k}={v}\n" for k, v in {**active, **examples}.items()))
    settings = Settings(_env_file=uncommented)
    assert settings.precision == examples["TDMI_PRECISION"]
    assert settings.job_claim_idle_s == float(examples["TDMI_JOB_CLAIM_IDLE_S"])
    # the defaults the file claims to show are the defaults
    defaults = Settings.model_fields
    assert examples["TDMI_JOB_MAX_ATTEMPTS"] == str(defaults["job_max_attempts"].default)
    assert float(examples["TDMI_JOB_CLAIM_IDLE_S"]) == defaults["job_claim_idle_s"].default


def test_a_wrong_value_in_the_settings_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "tdmi.env"
    broken.write_text("TDMI_PRECISION=fp8\n")
    with pytest.raises(ValidationError, match="precision"):
        Settings(_env_file=broken)
