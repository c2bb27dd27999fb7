"""The two distributions as a user gets them: both wheels are built from a copy of the sources,
the server runs from its installed wheels (not the checkout), and the SDK wheel goes into a clean
virtual environment with its dependencies from the package index: no torch, no OpenCV, no PyAV
come in, and the SDK there lists models, runs a job and names the extra for what needs media.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import API_KEY, SynthVideo
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "README.md", "tdmi", "clients"]
HINT = "pip install 'tdmi-client[media]'"


def _run(
    *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=600, cwd=cwd, env=env
    )


def _in_venv(venv: Path, program: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A program of the clean venv, run in the venv's folder with no PYTHON* variables: neither
    a PYTHONPATH nor a checkout in the working folder (``python -c`` puts it first) is seen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return _run(venv / "bin" / program, *args, cwd=venv, env=env)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``pip wheel --no-deps ./clients .`` on a copy of the sources (the build leaves files)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheels")
    done = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out, "./clients", ".", cwd=source
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdk,) = out.glob("tdmi_client-*.whl")
    (server,) = out.glob("tdmi_pose-*.whl")
    return {"sdk": sdk, "server": server}


@pytest.fixture(scope="module")
def installed_server(
    tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]
) -> Iterator[tuple[ServerProcess, Path]]:
    """``tdmi serve`` from both wheels installed into one folder, with this environment's
    dependencies: the checkout is not on the path (PYTHONSAFEPATH keeps the working folder off)."""
    target = tmp_path_factory.mktemp("site")
    done = _run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--target",
        target,
        wheels["sdk"],
        wheels["server"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    env = {"PYTHONPATH": str(target), "PYTHONSAFEPATH": "1", "TDMI_API_KEYS": f'["{API_KEY}"]'}
    proc = ServerProcess(tmp_path_factory.mktemp("data"), env=env)
    proc.wait_ready()
    yield proc, target
    proc.stop()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Path:
    """A clean virtual environment with the SDK wheel and its dependencies from the index."""
    path = tmp_path_factory.mktemp("venv")
    assert _run(sys.executable, "-m", "venv", path).returncode == 0
    done = _in_venv(path, "python", "-m", "pip", "install", "--disable-pip-version-check", wheels["sdk"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return path


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_server_wheel_holds_the_demo_checkpoint_and_none_of_the_sdk(wheels: dict[str, Path]) -> None:
    names = _names(wheels["server"])
    # package data: the demo checkpoint (the default model) and the weights catalogue
    assert {"tdmi/model/weights/tdmi_tiny_synth.pt", "tdmi/service/weights/catalogue.json"} <= set(names)
    assert "tdmi/service/cli.py" in names
    assert not [n for n in names if n.startswith(("tdmi/client/", "tdmi/protocol/", "tests/", "bench/"))]


def test_the_sdk_wheel_holds_the_protocol_and_the_page_and_asks_for_no_torch(wheels: dict[str, Path]) -> None:
    names = _names(wheels["sdk"])
    assert {"tdmi/protocol/__init__.py", "tdmi/protocol/media.py", "tdmi/client/cli.py"} <= set(names)
    assert {f"tdmi/client/web/{f}" for f in ("index.html", "app.js", "style.css")} <= set(names)
    assert not [n for n in names if n.startswith(("tdmi/model/", "tdmi/service/"))]
    with zipfile.ZipFile(wheels["sdk"]) as archive:
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist")
        ]
    base = [r for r in requires if "extra ==" not in r]
    assert {r.split()[1].split(">")[0] for r in base} == {"httpx", "websockets", "pydantic", "numpy", "tqdm"}


def test_the_installed_server_serves_the_page_from_the_sdk_wheel(
    installed_server: tuple[ServerProcess, Path],
) -> None:
    server, target = installed_server
    assert f"tdmi-tiny={target}/tdmi/model/weights/tdmi_tiny_synth.pt" in server.log()
    code = "from tdmi.service.api.page import WEB_DIR; print(WEB_DIR)"
    done = _run(
        sys.executable, "-c", code, env={**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "tdmi" / "client" / "web")
    page = httpx.get(f"{server.base}/", timeout=30)
    assert page.status_code == 200 and page.text == (target / "tdmi/client/web/index.html").read_text()


def test_the_clean_venv_has_the_sdk_and_no_torch_opencv_or_pyav(venv: Path) -> None:
    for module in ("torch", "cv2", "av"):
        done = _in_venv(venv, "python", "-c", f"import {module}")
        assert done.returncode == 1 and f"No module named '{module}'" in done.stderr
    done = _in_venv(venv, "python", "-c", "import tdmi.client, tdmi.protocol; print(tdmi.client.__file__)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(venv)


def test_the_sdk_in_the_clean_venv_talks_to_the_server(
    venv: Path, installed_server: tuple[ServerProcess, Path], synth_video: SynthVideo
) -> None:
    server, _ = installed_server
    command = ["--url", server.base, "--api-key", API_KEY]
    models = _in_venv(venv, "tdmi-client", *command, "models", "--json")
    assert models.returncode == 0, models.stderr
    assert [m["name"] for m in json.loads(models.stdout)] == ["tdmi-tiny"]
    job = """
import sys
from tdmi.client import PoseClient

with PoseClient(sys.argv[1], api_key=sys.argv[2]) as client:
    job = client.submit(sys.argv[3])
    job.wait(timeout_s=300)
    result = job.result()
print(len(result.frames), result.video.frames)
"""
    done = _in_venv(venv, "python", "-c", job, server.base, API_KEY, synth_video.path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(synth_video.frames)] * 2
    stream = _in_venv(venv, "tdmi-client", *command, "stream", synth_video.path)
    assert stream.returncode == 2
    assert stream.stderr.strip().splitlines() == [
        f"tdmi-client: {synth_video.path} needs PyAV, which is not installed: {HINT}"
    ]
