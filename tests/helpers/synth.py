"""A small synthetic video with its PoseTrack ground truth, made by ``tdmi.model.data.synth``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tdmi.model.data.synth import SynthOptions, generate_dataset

__all__ = ["SynthVideo", "make_synth_video"]


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
