"""``tdmi-client`` against the service (around a fake node, whose detector finds one person in the
middle of every frame): every command, the files it writes, its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tdmi.client.cli import EXIT_CODES, main
from tests.clients.conftest import API_KEY, SynthVideo
from tests.helpers.in_process import ServedApp


def run(service: ServedApp, *args: str, key: str = API_KEY) -> int:
    return main(["--url", service.base, "--api-key", key, *args])


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_pose_writes_the_result_and_the_overlay_video(
    service: ServedApp, synth_video: SynthVideo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, render = tmp_path / "result.json", tmp_path / "overlay.mp4"
    code = run(service, "pose", str(synth_video.path), "--out", str(out), "--render", str(render))
    assert code == 0
    result = json.loads(out.read_text())
    assert [f["index"] for f in result["frames"]] == list(range(synth_video.frames))
    assert len(frames_of(render)) == synth_video.frames
    err = capsys.readouterr().err
    assert "submitted" in err and f"{synth_video.frames}/{synth_video.frames}" in err  # the progress bar


def test_pose_prints_other_formats_on_stdout(
    service: ServedApp, synth_video: SynthVideo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(service, "pose", str(synth_video.path), "--format", "coco", "--quiet") == 0
    coco = json.loads(capsys.readouterr().out)
    assert isinstance(coco, list) and all({"image_id", "keypoints", "score"} <= set(p) for p in coco)


def test_stream_writes_json_lines_in_order_and_draws_with_the_shared_overlay(
    service: ServedApp,
    person_video: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out, render = tmp_path / "results.jsonl", tmp_path / "live.mp4"
    code = run(
        service, "stream", str(person_video), "--out", str(out), "--render", str(render), "--show",
        "--max-frames", "12", "--fps", "50",
    )  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["frame_id"] for m in lines] == list(range(12)) and {m["type"] for m in lines} == {"result"}
    drawn, original = frames_of(render), frames_of(person_video)[:12]
    assert len(drawn) == 12
    assert all(len(m["persons"]) == 1 for m in lines)  # the fake detector's one person
    for message in lines:
        # drawn along the person's box (1 px lines, smeared by the video codec's chroma subsampling)
        i, person = message["frame_id"], message["persons"][0]
        x1, y1, x2, y2 = (round(v) for v in person["box"])
        changed = np.abs(drawn[i].astype(int) - original[i].astype(int)).max(axis=2) > 40
        band = np.zeros_like(changed)
        band[max(y1 - 2, 0) : y2 + 3, max(x1 - 2, 0) : x2 + 3] = True
        band[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2] = False
        assert changed[band].sum() > 40 and changed[band].mean() > 4 * changed[~band].mean()
    err = capsys.readouterr().err
    assert "--show ignored" in err and err.count("--show ignored") == 1
    assert "12 results, 0 dropped" in err


def test_models_and_status(
    service: ServedApp, synth_video: SynthVideo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(service, "models") == 0
    assert capsys.readouterr().out.startswith("tdmi-tiny\t5 frames")
    assert run(service, "models", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["skeleton"]["joints"][2] == "head_top"
    assert run(service, "pose", str(synth_video.path), "--quiet") == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    assert run(service, "status", job_id) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "done" and status["progress"]["frames_done"] == synth_video.frames


def test_error_exit_codes_with_one_line_messages(
    service: ServedApp,
    synth_video: SynthVideo,
    not_a_video: Path,
    dead_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = [
        (["--url", dead_url, "models"], "unreachable", "cannot reach the server"),
        (["--url", dead_url, "stream", str(synth_video.path)], "unreachable", "cannot reach"),
        (["--url", service.base, "--api-key", "wrong", "pose", str(synth_video.path)], "auth", "API key"),
        (["--url", service.base, "--api-key", "wrong", "stream", str(synth_video.path)], "auth", "API key"),
        (
            ["--url", service.base, "--api-key", API_KEY, "pose", str(not_a_video)],
            "bad_input",
            "not a readable",
        ),
        (
            ["--url", service.base, "--api-key", API_KEY, "pose", str(tmp_path / "no.mp4")],
            "bad_input",
            "no such",
        ),
        (["--url", service.base, "--api-key", API_KEY, "status", "nope"], "bad_input", "no job nope"),
    ]
    for argv, kind, message in cases:
        assert main(argv) == EXIT_CODES[kind], argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and err[0].startswith("tdmi-client: "), (argv, err)


def test_the_installed_entry_point_and_bad_usage(dead_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from tdmi.client.cli import main; raise SystemExit(main())",
         "--url", dead_url, "models"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == EXIT_CODES["unreachable"] and done.stderr.count("\n") == 1
    usage = subprocess.run(
        [sys.executable, "-m", "tdmi.client.cli", "pose"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == EXIT_CODES["bad_input"] and "required: video" in usage.stderr
