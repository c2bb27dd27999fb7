"""``tdmi weights pull`` against a real HTTP mirror on loopback, then ``tdmi serve`` with what it
pulled. The catalogue here is a site file (``TDMI_WEIGHTS_CATALOGUE``) whose entries point at
files the test makes, with their hashes, under publisher-like URLs the mirror replaces."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tdmi.model.presets import build_model
from tdmi.service.cli import main
from tdmi.service.weights.catalogue import WeightsStore
from tdmi.service.weights.download import pull
from tests.helpers.mirror import Mirror, serve_mirror
from tests.helpers.mmpose import write_mmpose_checkpoint
from tests.helpers.server import ServerProcess, free_port
from tests.helpers.synth import SynthVideo
from tests.helpers.weights import randomize

PUBLISHER = "https://download.example.org"


def _tiny_mmpose_bytes(tmp_path: Path) -> bytes:
    """hrnet-tiny's weights in MMPose 0.x form (random values: loading is tested, not accuracy)."""
    official = randomize(build_model("hrnet-tiny")).state_dict()
    return write_mmpose_checkpoint(official, tmp_path / "tiny.pth", "0.x").read_bytes()


def _pose(name: str, path: str, data: bytes, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "kind": "pose",
        "title": f"{name} for tests",
        "url": PUBLISHER + path,
        "file": path.rsplit("/", 1)[-1],
        "licence": "test",
        "weights_terms": "test",
        "source": "made by the test",
        "preset": "hrnet-tiny",
        "joints": "coco-17",  # hrnet-tiny's own layout is PoseTrack's: outputs must be relabelled
        "input_size": [128, 96],
        "layout": "mmpose-0.x",
        **fields,
    }


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with serve_mirror() as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The mirror's files, a site catalogue describing them, and the TDMI_WEIGHTS_* settings."""
    pose = _tiny_mmpose_bytes(tmp_path)
    digest = hashlib.sha256(pose).hexdigest()
    member = b"not really onnx, only its bytes matter here"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("det-sdk/end2end.onnx", member)
        zf.writestr("det-sdk/pipeline.json", "{}")
    files = {
        f"/mmpose/hrnet_tiny_coco-{digest[:8]}_20250101.pth": pose,  # MMPose's name: hash prefix
        "/full/hrnet_tiny_full.pth": pose,
        "/bad/hrnet_tiny_bad.pth": pose,
        "/sdk/det.zip": archive.getvalue(),
    }
    mirror.files.update(files)
    entries = [
        _pose("hrnet-tiny-coco", next(iter(files)), pose, sha256=digest[:8]),
        _pose("full-hash", "/full/hrnet_tiny_full.pth", pose, sha256=digest, size=len(pose)),
        _pose("bad-hash", "/bad/hrnet_tiny_bad.pth", pose, sha256="0123abcd"),
        {
            "name": "zipped-detector",
            "kind": "detector",
            "title": "a detector in an MMDeploy SDK zip",
            "url": PUBLISHER + "/sdk/det.zip",
            "file": "det.onnx",
            "archive_member": "end2end.onnx",
            "licence": "test",
            "weights_terms": "test",
            "source": "made by the test",
            "input_size": [640, 640],
            "layout": "mmdeploy",
        },
        {
            "name": "drive-only",
            "kind": "pose",
            "title": "a file behind a sharing page",
            "url": None,
            "manual": "download it from the authors' drive folder",
            "file": "drive.pth",
            "licence": "test",
            "weights_terms": "test",
            "source": "made by the test",
            "preset": "hrnet-tiny",
            "joints": "coco-17",
            "input_size": [128, 96],
            "layout": "official",
        },
    ]
    catalogue = tmp_path / "site-catalogue.json"
    catalogue.write_text(json.dumps({"entries": entries}))
    monkeypatch.setenv("TDMI_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TDMI_WEIGHTS_MIRROR", mirror.base)
    monkeypatch.setenv("TDMI_WEIGHTS_CATALOGUE", str(catalogue))
    return {"member": member, "pose": pose}


def _cache_files(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return (
        sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []
    )


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tdmi: error: ")
    return lines[0]


def test_pull_fetches_from_the_mirror_checks_the_hash_and_places_the_file(
    site: dict[str, bytes], mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "pull", "--quiet", "hrnet-tiny-coco"]) == 0
    (name,) = _cache_files(tmp_path)
    assert (tmp_path / "cache" / name).read_bytes() == site["pose"]
    # the publisher's host was replaced by the mirror's, the path kept
    assert [path for path, _ in mirror.requests] == [f"/mmpose/{name}"]
    assert main(["weights", "pull", "--quiet", "hrnet-tiny-coco"]) == 0  # already there: no fetch
    assert len(mirror.requests) == 1
    out = capsys.readouterr().out
    assert str(tmp_path / "cache" / name) in out
    assert main(["weights", "list"]) == 0
    assert f"pulled: {tmp_path / 'cache' / name}" in capsys.readouterr().out
    assert main(["weights", "path", "hrnet-tiny-coco"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'cache' / name}\n"
    assert main(["weights", "path", "full-hash"]) == 1  # not pulled: where it goes, and how
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'cache' / 'hrnet_tiny_full.pth'}\n"
    assert err.strip().splitlines() == [
        "tdmi: full-hash is not there yet: `tdmi weights pull full-hash` fetches it, "
        "or place the file there by hand"
    ]


def test_a_cut_download_resumes_with_a_range_request(
    site: dict[str, bytes], mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    half = len(site["pose"]) // 2
    mirror.cut_after["/full/hrnet_tiny_full.pth"] = half
    assert main(["weights", "pull", "--quiet", "full-hash"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "the next pull resumes" in line
    assert _cache_files(tmp_path) == [".partial/full-hash.part"]  # nothing under the final name
    assert (tmp_path / "cache" / ".partial" / "full-hash.part").stat().st_size == half
    assert main(["weights", "pull", "--quiet", "full-hash"]) == 0
    assert mirror.requests[-1] == ("/full/hrnet_tiny_full.pth", f"bytes={half}-")
    assert _cache_files(tmp_path) == ["hrnet_tiny_full.pth"]
    assert not (tmp_path / "cache" / ".partial").exists()  # emptied, then removed
    assert (tmp_path / "cache" / "hrnet_tiny_full.pth").read_bytes() == site["pose"]


def test_two_pulls_of_one_file_take_turns(site: dict[str, bytes], mirror: Mirror, tmp_path: Path) -> None:
    """The second pull waits for the first (which is held half-sent), then finds the file: one
    download, no bytes of two writers in one part."""
    store = WeightsStore(tmp_path / "cache", tmp_path / "site-catalogue.json")
    entry = store.catalogue.entries["full-hash"]
    release = threading.Event()
    mirror.hold["/full/hrnet_tiny_full.pth"] = release
    waited: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(pull, entry, store, mirror.base, False)
        _until(lambda: len(mirror.requests) == 1)
        second = pool.submit(pull, entry, store, mirror.base, False, waited.append)
        _until(lambda: bool(waited))
        assert not second.done()
        release.set()
        assert first.result(30) == second.result(30) == tmp_path / "cache" / "hrnet_tiny_full.pth"
    assert "another pull is running" in waited[0]
    assert len(mirror.requests) == 1
    assert (tmp_path / "cache" / "hrnet_tiny_full.pth").read_bytes() == site["pose"]


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_hash_mismatch_keeps_nothing_and_touches_nothing_else(
    site: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "pull", "--quiet", "full-hash"]) == 0
    before = {name: (tmp_path / "cache" / name).read_bytes() for name in _cache_files(tmp_path)}
    capsys.readouterr()
    assert main(["weights", "pull", "--quiet", "bad-hash"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "does not match" in line and "0123abcd" in line
    assert {name: (tmp_path / "cache" / name).read_bytes() for name in _cache_files(tmp_path)} == before


@pytest.mark.parametrize("host", ["closed-port", "http://tdmi-nowhere.invalid"])
def test_offline_every_name_is_tried_with_the_ways_round_and_no_directory_is_left(
    host: str,
    site: dict[str, bytes],
    mirror: Mirror,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A closed loopback port and a name that never resolves (RFC 6761's ``.invalid``)."""
    nowhere = f"http://127.0.0.1:{free_port()}" if host == "closed-port" else host  # nothing listens
    monkeypatch.setenv("TDMI_WEIGHTS_MIRROR", nowhere)
    assert main(["weights", "pull", "--quiet", "hrnet-tiny-coco", "drive-only", "zipped-detector"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    fetched, manual, zipped = lines[:3]
    assert fetched.startswith("tdmi: error: hrnet-tiny-coco: cannot fetch") and "ConnectError" in fetched
    assert manual.startswith("tdmi: error: drive-only: download it from the authors' drive folder")
    assert zipped.startswith("tdmi: error: zipped-detector: cannot fetch") and "ConnectError" in zipped
    assert lines[3:] == [
        f"tdmi: hint: the mirror TDMI_WEIGHTS_MIRROR={nowhere} could not be reached: check it, or unset it",
        "tdmi: hint: or download a file on another machine (its URL: `tdmi weights list`) and place it "
        "where `tdmi weights path NAME` says: hrnet-tiny-coco, zipped-detector",
        "tdmi: pulled 0 of 3; failed: hrnet-tiny-coco, drive-only, zipped-detector",
    ]
    assert not (tmp_path / "cache").exists()  # no empty cache, no empty .partial
    monkeypatch.setenv("TDMI_WEIGHTS_MIRROR", mirror.base)  # the way round: a mirror that answers
    assert main(["weights", "pull", "--quiet", "full-hash", "hrnet-tiny-coco"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "tdmi: pulled 2 of 2"


def test_offline_without_a_mirror_names_the_setting(
    site: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalogue = json.loads((tmp_path / "site-catalogue.json").read_text())
    for entry in catalogue["entries"]:  # the publisher itself unreachable
        entry["url"] = entry["url"] and entry["url"].replace(PUBLISHER, f"http://127.0.0.1:{free_port()}")
    (tmp_path / "site-catalogue.json").write_text(json.dumps(catalogue))
    monkeypatch.delenv("TDMI_WEIGHTS_MIRROR")
    assert main(["weights", "pull", "--quiet", "full-hash"]) == 1
    error, *hints = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("tdmi: error: full-hash: cannot fetch") and "ConnectError" in error
    assert hints[0].startswith("tdmi: hint: offline? TDMI_WEIGHTS_MIRROR=http://HOST/PATH")
    assert (
        hints[1].endswith("`tdmi weights path NAME` says: full-hash") and len(hints) == 2
    )  # one name: no summary
    assert not (tmp_path / "cache").exists()


def test_a_zip_download_gives_its_one_member_and_an_unhashed_file_is_reported(
    site: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "pull", "--quiet", "zipped-detector"]) == 0
    assert _cache_files(tmp_path) == ["det.onnx"]
    assert (tmp_path / "cache" / "det.onnx").read_bytes() == site["member"]
    assert "the publisher gives no hash; sha256 of what was fetched" in capsys.readouterr().err


def test_an_entry_without_a_direct_url_says_where_to_get_it(
    site: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "pull", "drive-only"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "authors' drive folder" in line and str(tmp_path / "cache" / "drive.pth") in line


def test_serve_names_every_entry_not_pulled_and_one_command(site: dict[str, bytes], tmp_path: Path) -> None:
    models = ["--model", "hrnet-tiny-coco", "--model", "tdmi-tiny=full-hash", "--model", "drive-only"]
    done = subprocess.run(
        [sys.executable, "-m", "tdmi.service.cli", "serve", *models],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert line.startswith("tdmi: error: hrnet-tiny-coco, full-hash, drive-only are not pulled into ")
    assert "run `tdmi weights pull hrnet-tiny-coco full-hash`" in line
    assert (
        f"drive-only: download it from the authors' drive folder and place it at {tmp_path / 'cache'}" in line
    )


@pytest.mark.slow  # a server of its own, on the pulled files
def test_serve_runs_what_was_pulled_with_the_catalogue_joints(
    site: dict[str, bytes], tmp_path: Path, synth_video: SynthVideo
) -> None:
    assert main(["weights", "pull", "--quiet", "hrnet-tiny-coco"]) == 0
    models = ["--model", "hrnet-tiny-coco", "--model", "tdmi-tiny=hrnet-tiny-coco", "--detector", "none"]
    server = ServerProcess(tmp_path / "data", *models)
    try:
        server.wait_ready()
        listed = {m["name"]: m for m in httpx.get(f"{server.base}/v1/models").json()["models"]}
        assert set(listed) == {"hrnet-tiny-coco", "tdmi-tiny"}
        for model in listed.values():  # both output the file's joints, in COCO order
            assert model["skeleton"]["layout"] == "coco-17"
            assert model["skeleton"]["joints"][1:3] == ["left_eye", "right_eye"]
            assert model["synthetic_demo"] is False  # published weights: the page says so
        assert listed["hrnet-tiny-coco"]["checkpoint"].startswith("hrnet_tiny_coco-")
        with synth_video.path.open("rb") as f:
            reply = httpx.post(
                f"{server.base}/v1/pose",
                params={"wait": "true"},
                files={"file": ("clip.mp4", f)},
                data={"model": "hrnet-tiny-coco", "boxes": json.dumps(synth_video.boxes())},
                timeout=180,
            )
        assert reply.status_code == 200, reply.text
        frames = reply.json()["frames"]
        assert len(frames) == synth_video.frames
        assert all(len(p["keypoints"]) == 17 for f in frames for p in f["persons"])
        assert any(f["persons"] for f in frames)
    finally:
        server.stop()
    assert "person detector: none" in server.log()
