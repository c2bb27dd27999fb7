"""The shipped demo checkpoint on held-out synthetic video: ``tdmi predict`` then ``tdmi eval``, and
the service end to end, each scored with the PoseTrack metric against thresholds set from what
was measured (see BENCHMARKS.md and the README's demo section)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.model.evaluation import evaluate_posetrack_sequences
from tdmi.service.cli import main
from tdmi.service.config import DEMO_CHECKPOINT
from tests.helpers.server import ServerProcess

pytestmark = pytest.mark.slow  # measured: 20 to 35 s per test on the shared 2-core machine

# The first demo scored 17.8 (predict) and 18.0 (service) mAP on this small set when these
# thresholds were set (2026-11-21); the demo pair shipped on 2026-12-02 scores 19.2 (TDMI) and
# 19.7 (its single-frame control, predict) here: on 3 short videos the two are within noise of each
# other, their difference is measured on 24 videos (README, "The demo model"). Untrained weights
# score about 0.1. The margin covers other CPUs and library versions.
PREDICT_MIN_MAP = 12.0
SERVICE_MIN_MAP = 12.0


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic videos with a seed no training set used (the demo trained on seed 1)."""
    root = tmp_path_factory.mktemp("held_out")
    generate_dataset(SynthOptions(out=root, videos=3, split="val", frames=16, seed=9))
    return root


CONTROL_CHECKPOINT = DEMO_CHECKPOINT.with_name("hrnet_tiny_synth.pt")


@pytest.mark.parametrize(
    ("model", "checkpoint"), [("tdmi-tiny", DEMO_CHECKPOINT), ("hrnet-tiny", CONTROL_CHECKPOINT)]
)
def test_predict_then_eval_with_the_demo_checkpoints(
    model: str, checkpoint: Path, held_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pred"
    args = ["predict", "posetrack", "--model", model, "--checkpoint", str(checkpoint)]
    assert (
        main(
            [
                *args,
                "--data",
                str(held_out),
                "--annotations",
                str(held_out / "annotations/val"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(["eval", "posetrack", "--gt", str(held_out / "annotations/val"), "--pred", str(out), "--json"])
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ap"]["columns"]["Total"] > PREDICT_MIN_MAP
    assert metrics["tracking"] is not None  # ground-truth track ids came along


def test_the_service_scores_on_synthetic_video_with_ground_truth_boxes(
    held_out: Path, server: ServerProcess
) -> None:
    """On the shared real server, whose default model is the demo checkpoint."""
    models = httpx.get(f"{server.base}/v1/models").json()["models"]
    assert [(m["name"], m["checkpoint"]) for m in models] == [("tdmi-tiny", DEMO_CHECKPOINT.name)]
    gt, pred = {}, {}
    for annotation in sorted((held_out / "annotations/val").glob("*.json")):
        sequence = json.loads(annotation.read_text())
        index = {image["id"]: i for i, image in enumerate(sequence["images"])}
        boxes: dict[str, list] = {str(i): [] for i in range(len(sequence["images"]))}
        for person in sequence["annotations"]:
            x, y, w, h = person["bbox"]
            boxes[str(index[person["image_id"]])].append(
                [max(x, 0), max(y, 0), min(x + w, 320), min(y + h, 240)]
            )
        video = held_out / "videos/val" / f"{annotation.stem}.mp4"
        with video.open("rb") as f:
            reply = httpx.post(
                f"{server.base}/v1/pose",
                params={"wait": "true"},
                files={"file": (video.name, f)},
                data={"boxes": json.dumps(boxes)},
                timeout=300,
            )
        assert reply.status_code == 200, reply.text
        job = reply.json()["job_id"]
        result = httpx.get(f"{server.base}/v1/pose/{job}/result", params={"format": "posetrack"}).json()
        gt[annotation.stem], pred[annotation.stem] = sequence, result
    metrics = evaluate_posetrack_sequences(gt, pred)
    assert metrics.ap.total > SERVICE_MIN_MAP
