"""Fixtures of the integration tests: a synthetic video with ground truth, a tiny checkpoint, servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tdmi.model.checkpoint import save_checkpoint
from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.model.presets import build_model
from tests.helpers.redis_server import RedisServer
from tests.helpers.server import ServerProcess
from tests.helpers.weights import randomize

# small limits so that the limit tests stay small
SMALL_LIMITS = {
    "TDMI_MAX_UPLOAD_BYTES": str(2_000_000),
    "TDMI_MAX_VIDEO_PIXELS": str(640 * 480),
    "TDMI_WAIT_MAX_FRAMES": "40",
    "TDMI_DETECT_EVERY": "4",
    "TDMI_MAX_STREAMS": "4",
    "TDMI_STALENESS_MS": "60000",  # a 2-core CI machine is slow: no live drops in these tests
}


@dataclass(frozen=True)
class SynthVideo:
    path: Path  # the MP4
    annotations: dict  # its PoseTrack 2018 file
    frames: int
    width: int
    height: int
    fps: float

    def boxes(self) -> dict[str, list[list[float]]]:
        """Ground-truth boxes per frame index, in the job API's form."""
        index = {image["id"]: i for i, image in enumerate(self.annotations["images"])}
        out: dict[str, list[list[float]]] = {str(i): [] for i in range(self.frames)}
        for ann in self.annotations["annotations"]:
            x, y, w, h = ann["bbox"]
            x1, y1 = max(x, 0.0), max(y, 0.0)
            x2, y2 = min(x + w, self.width), min(y + h, self.height)
            if x2 > x1 and y2 > y1:
                out[str(index[ann["image_id"]])].append([x1, y1, x2, y2])
        return out


def make_synth_video(root: Path, frames: int, seed: int) -> SynthVideo:
    """One small synthetic video (192x144, two or three people) with its PoseTrack annotations."""
    options = SynthOptions(
        out=root,
        videos=1,
        split="val",
        frames=frames,
        width=192,
        height=144,
        seed=seed,
        min_persons=2,
        max_persons=3,
    )
    generate_dataset(options)
    (annotation,) = (root / "annotations" / "val").glob("*.json")
    data = json.loads(annotation.read_text())
    video = root / "videos" / "val" / f"{annotation.stem}.mp4"
    return SynthVideo(video, data, options.frames, options.width, options.height, options.fps)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory: pytest.TempPathFactory) -> SynthVideo:
    return make_synth_video(tmp_path_factory.mktemp("synth"), frames=16, seed=7)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tdmi-tiny checkpoint with random (not trained) weights: exercises loading, not accuracy."""
    path = tmp_path_factory.mktemp("weights") / "tdmi-tiny-random.pt"
    save_checkpoint(randomize(build_model("tdmi-tiny")), path, "tdmi-tiny", note="random weights for tests")
    return path


@pytest.fixture(scope="session")
def official_hrnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file in the official HRNet release's form: a bare state dict under the official key names."""
    path = tmp_path_factory.mktemp("weights") / "pose_hrnet_w32_256x192.pth"
    torch.save(randomize(build_model("hrnet-w32-256x192")).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, official_hrnet_checkpoint: Path
) -> Iterator[ServerProcess]:
    """One server for a module: tdmi-tiny and the single-frame HRNet-W32 (official file) on the CPU,
    small limits so that the limit tests stay small."""
    models = [
        "--model",
        f"tdmi-tiny={tiny_checkpoint}",
        "--model",
        f"hrnet-w32-256x192={official_hrnet_checkpoint}",
    ]
    proc = ServerProcess(tmp_path_factory.mktemp("data"), *models, env=SMALL_LIMITS)
    proc.wait_ready()
    yield proc
    proc.stop()
