"""The two distributions as a user gets them: each sdist is built from a copy of the checkout and
each wheel from its sdist alone (so an sdist that misses a file makes a wheel that misses it), the
server runs from its installed wheels (not the checkout), and the SDK wheel goes into a clean
virtual environment with its dependencies from the package index: no torch, no OpenCV, no PyAV
come in, and the SDK there lists models, runs a job and names the extra for what needs media.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.conftest import API_KEY, SynthVideo
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HINT = "pip install 'tdmi-client[media]' (in a checkout of the project: pip install './clients[media]')"
# what may stand at the top of an sdist: the project files, its packages and setuptools' own files
SDIST_TOP = {"PKG-INFO", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in", "tdmi"}


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
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's files (tracked, and new ones git does not ignore), with what a
    developer's checkout also holds beside them: a virtual environment and training runs. Builds
    write into the folder they build (egg-info), so they run here and not in the checkout."""
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    copy = tmp_path_factory.mktemp("checkout")
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted or moved away but still in the index is skipped
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes(source.read_bytes())
    for name in (".venv/pyvenv.cfg", "runs/tdmi-tiny/last.pt"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("not for the sdist\n")
    return copy


@pytest.fixture(scope="module")
def sdists(tmp_path_factory: pytest.TempPathFactory, checkout: Path) -> dict[str, Path]:
    """Both sdists, made by setuptools' build backend (what ``python -m build --sdist`` calls)."""
    out = tmp_path_factory.mktemp("sdists")
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"
    for project in (checkout / "clients", checkout):
        done = _run(sys.executable, "-c", build, cwd=project)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdk,) = out.glob("tdmi_client-*.tar.gz")
    (server,) = out.glob("tdmi_pose-*.tar.gz")
    return {"sdk": sdk, "server": server}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory, sdists: dict[str, Path]) -> dict[str, Path]:
    """Each wheel built from its unpacked sdist alone, as pip builds one that an index serves."""
    unpacked = tmp_path_factory.mktemp("unpacked")
    folders = []
    for sdist in sdists.values():
        with tarfile.open(sdist) as archive:
            archive.extractall(unpacked, filter="data")
        folders.append(unpacked / sdist.name.removesuffix(".tar.gz"))
    out = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", out]
    done = _run(*pip, *folders)
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


def _members(sdist: Path) -> set[str]:
    """The sdist's files, named from inside its one top folder (``tdmi_pose-0.1.0/``)."""
    with tarfile.open(sdist) as archive:
        return {m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()}


def _sources(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in (folder / "tdmi").rglob("*.py")}


def _requires(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist values."""
    names = _names(wheel)
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    return [line.removeprefix("Requires-Dist: ") for line in lines if line.startswith("Requires-Dist: ")]


def test_each_sdist_holds_its_packages_and_their_data_and_nothing_of_the_checkout_besides(
    sdists: dict[str, Path], checkout: Path
) -> None:
    sdk, server = _members(sdists["sdk"]), _members(sdists["server"])
    sdk_code, server_code = _sources(checkout / "clients"), _sources(checkout)
    assert {n for n in sdk if n.endswith(".py")} == sdk_code
    assert {"tdmi/protocol/messages.py", "tdmi/client/cli.py"} <= sdk_code
    assert {f"tdmi/client/web/{f}" for f in ("index.html", "app.js", "style.css")} <= sdk
    assert {n for n in server if n.endswith(".py")} == server_code
    assert {"tdmi/model/weights/tdmi_tiny_synth.pt", "tdmi/service/weights/catalogue.json"} <= server
    assert "README.md" in server  # the project's readme, its long description
    # setuptools adds tests/test*.py by default (MANIFEST.in prunes tests); .venv, runs, bench,
    # docs and deploy never belong in an sdist
    for members in (sdk, server):
        assert {top for n in members if not (top := n.split("/")[0]).endswith(".egg-info")} <= SDIST_TOP
    assert not [n for n in sdk if n.startswith(("tdmi/model/", "tdmi/service/"))]
    assert not [n for n in server if n.startswith(("tdmi/client/", "tdmi/protocol/"))]


def test_the_server_wheel_holds_the_demo_checkpoint_and_none_of_the_sdk(wheels: dict[str, Path]) -> None:
    names = _names(wheels["server"])
    # package data: the demo checkpoint (the default model) and the weights catalogue
    assert {"tdmi/model/weights/tdmi_tiny_synth.pt", "tdmi/service/weights/catalogue.json"} <= set(names)
    assert "tdmi/service/cli.py" in names
    assert not [n for n in names if n.startswith(("tdmi/client/", "tdmi/protocol/", "tests/", "bench/"))]
    # published, it needs the SDK from the index: a version, never a path or URL of this checkout
    assert [r for r in _requires(wheels["server"]) if r.startswith("tdmi-client")] == [
        "tdmi-client[media]==0.1.0"
    ]


def test_pip_installs_the_server_from_a_checkout_with_the_sdk_beside_it(
    checkout: Path, tmp_path: Path
) -> None:
    """The README's ``pip install ./clients .``: pip takes the SDK the server requires from
    ./clients (no index has it), and every other dependency resolves; dry run, nothing installed."""
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    done = _run(*pip, "--report", report, "./clients", ".", cwd=checkout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sources = {
        i["metadata"]["name"]: i["download_info"]["url"] for i in json.loads(report.read_text())["install"]
    }
    assert sources["tdmi-client"] == (checkout / "clients").as_uri()
    assert sources["tdmi-pose"] == checkout.as_uri()
    assert {"torch", "fastapi", "httpx", "av"} <= sources.keys()


def test_the_sdk_wheel_holds_the_protocol_and_the_page_and_asks_for_no_torch(wheels: dict[str, Path]) -> None:
    names = _names(wheels["sdk"])
    assert {"tdmi/protocol/__init__.py", "tdmi/protocol/media.py", "tdmi/client/cli.py"} <= set(names)
    assert {f"tdmi/client/web/{f}" for f in ("index.html", "app.js", "style.css")} <= set(names)
    assert not [n for n in names if n.startswith(("tdmi/model/", "tdmi/service/"))]
    base = [r for r in _requires(wheels["sdk"]) if "extra ==" not in r]
    assert {r.split(">")[0] for r in base} == {"httpx", "websockets", "pydantic", "numpy", "tqdm"}


def test_the_installed_server_serves_the_page_from_the_sdk_wheel(
    installed_server: tuple[ServerProcess, Path],
) -> None:
    server, target = installed_server
    # the default model is the wheel's demo checkpoint (the log names its file; the place is asked)
    assert "model tdmi-tiny:" in server.log() and "checkpoint tdmi_tiny_synth.pt" in server.log()
    code = "from tdmi.service.config import DEMO_CHECKPOINT; print(DEMO_CHECKPOINT)"
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    done = _run(sys.executable, "-c", code, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "tdmi" / "model" / "weights" / "tdmi_tiny_synth.pt")
    code = "from tdmi.service.api.page import WEB_DIR; print(WEB_DIR)"
    done = _run(sys.executable, "-c", code, env=env)
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
