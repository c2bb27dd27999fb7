"""The Dockerfile, linted without a Docker engine: bases, layers, user, health check, entry point.

No image is built here (no engine, no registry access); these checks read the file itself, and
the requirement lists the image installs are produced by running the Dockerfile's own script.
"""

from __future__ import annotations

import re
import shlex
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
    return [i for stage in DOCKERFILE.chain({"VARIANT": variant}) for i in stage.instructions]


def _commands(instruction: Instruction) -> list[list[str]]:
    """A RUN's shell commands (split at &&, ; and newlines), each as words; flags and heredocs aside."""
    text = instruction.arguments
    words = shlex.split(text)
    while words and words[0].startswith("--"):  # RUN --mount=...
        text = text.split(None, 1)[1]
        words = words[1:]
    return [shlex.split(part) for part in re.split(r"&&|;|\n", text) if part.strip()]


def _runs(instructions: list[Instruction]) -> list[tuple[Instruction, list[str]]]:
    return [(i, cmd) for i in instructions if i.keyword == "RUN" for cmd in _commands(i)]


def test_the_default_build_is_the_gpu_image() -> None:
    assert DOCKERFILE.global_args["VARIANT"] == "gpu"
    assert DOCKERFILE.chain() == DOCKERFILE.chain({"VARIANT": "gpu"})


@pytest.mark.parametrize(
    ("variant", "base"),
    [
        ("gpu", r"nvidia/cuda:12\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d+\.\d+"),
        ("cpu", r"python:3\.\d+-slim-\w+"),
    ],
)
def test_each_variant_starts_from_its_runtime_image(variant: str, base: str) -> None:
    assert re.fullmatch(base, DOCKERFILE.base_image({"VARIANT": variant}))


def test_external_images_are_pinned_and_never_latest() -> None:
    names = {s.name for s in DOCKERFILE.stages}
    for variant in VARIANTS:
        for stage in DOCKERFILE.stages:
            base = DOCKERFILE.resolve(stage.base, {"VARIANT": variant})
            if base in names:
                continue
            repository, _, tag = base.rpartition(":")
            assert repository and tag and tag != "latest", f"{base}: pin a tag"
            assert "/" not in tag, f"{base}: pin a tag"


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
    assert entrypoint.exec_form() == ["tdmi"]
    assert cmd.exec_form() == ["serve"]
    assert "tdmi" in PYPROJECT["project"]["scripts"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_health_check_asks_healthz_on_the_configured_port(variant: str) -> None:
    checks = [i for i in _image(variant) if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    command = checks[0].exec_form()
    assert command is not None, "HEALTHCHECK CMD in exec form"
    script = " ".join(command)
    assert "127.0.0.1" in script and "/healthz" in script and "TDMI_PORT" in script
    flags = checks[0].flags()
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
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
    code = [n for n, i in runs if "from=wheel" in i.flags().get("mount", "")]
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


def test_every_pip_install_leaves_no_cache() -> None:
    installs = [
        (i, cmd)
        for i, cmd in _runs(DOCKERFILE.instructions)
        if cmd[:2] in (["pip", "install"], ["pip", "wheel"])
    ]
    assert len(installs) >= 4
    for instruction, command in installs:
        assert "--no-cache-dir" in command, f"line {instruction.line}: {' '.join(command)}"


def test_apt_installs_only_what_is_named_and_drops_its_lists() -> None:
    apt_runs = [i for i in DOCKERFILE.instructions if i.keyword == "RUN" and "apt-get" in i.arguments]
    assert apt_runs, "the gpu runtime installs Python with apt-get"
    for instruction in apt_runs:
        commands = _commands(instruction)
        installs = [c for c in commands if c[:2] == ["apt-get", "install"]]
        assert installs and all("--no-install-recommends" in c and "-y" in c for c in installs)
        assert ["apt-get", "update"] in commands  # in the same layer as the install
        assert ["rm", "-rf", "/var/lib/apt/lists/*"] in commands


def test_nothing_is_added_from_urls_and_no_secrets_are_baked_in() -> None:
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
        "model/weights/tdmi_tiny_synth.pt",
        "service/cli.py",
        "protocol",
        "clients/pyproject.toml",
        "tdmi/model",
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
        "service/__pycache__/cli.cpython-312.pyc",
        "model/data/__pycache__",
    ]:
        assert ignore.excludes(left_out), left_out
