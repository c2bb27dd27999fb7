"""Writing a synthetic data set to disk: JPEG frames, one MP4 and one annotation file per video.

Video ``i`` is drawn from its own generator seeded with ``(seed, i)``, so a video does not
depend on how many others are made, and the same options give byte-identical JSON and JPEGs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.video.stream import VideoStream

from tdmi.model.data.synth.annotations import (
    CATEGORIES,
    MAX_VIDEOS_PER_SEED,
    image_entry,
    image_id,
    person_annotation,
    sequence_name,
    video_number,
)
from tdmi.model.data.synth.render import render_frame
from tdmi.model.data.synth.scene import SceneSpec, sample_scene

__all__ = [
    "JPEG_QUALITY",
    "MAX_PERSONS",
    "SynthOptions",
    "SynthSummary",
    "VideoSummary",
    "generate_dataset",
    "video_codec",
    "write_video",
]

JPEG_QUALITY = 90
MAX_PERSONS = 16
MAX_SEED = 999  # keeps image and annotation ids below 2**53 (exact in JavaScript and float64)
MAX_FRAMES = 9999  # the official image id holds four frame digits
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class SynthOptions:
    """What ``tdmi synth`` was asked for; checked on creation."""

    out: Path
    videos: int
    split: str = "train"
    frames: int = 40
    width: int = 320
    height: int = 240
    fps: float = 25.0
    min_persons: int = 1
    max_persons: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.videos <= MAX_VIDEOS_PER_SEED:
            raise ValueError(f"--videos must be 1..{MAX_VIDEOS_PER_SEED}, got {self.videos}")
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"--frames must be 1..{MAX_FRAMES}, got {self.frames}")
        if not (32 <= self.width <= 4096 and 32 <= self.height <= 4096) or self.width % 2 or self.height % 2:
            raise ValueError(
                f"--size must be even and 32..4096 on each side (H.264), got {self.width}x{self.height}"
            )
        if not 0 < self.fps <= 240:
            raise ValueError(f"--fps must be in (0, 240], got {self.fps}")
        if not 0 <= self.min_persons <= self.max_persons <= MAX_PERSONS:
            raise ValueError(f"--persons must be MIN-MAX with 0 <= MIN <= MAX <= {MAX_PERSONS}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be 0..{MAX_SEED}, got {self.seed}")
        if not _SPLIT_NAME.match(self.split):
            raise ValueError(f"--split must be letters, digits, '_' or '-', got {self.split!r}")

    @property
    def spec(self) -> SceneSpec:
        return SceneSpec(self.width, self.height, self.fps, self.frames, self.min_persons, self.max_persons)


@dataclass(frozen=True)
class VideoSummary:
    sequence: str
    frames: int
    annotations: int
    occluded_frames: int
    blurred_frames: int


@dataclass(frozen=True)
class SynthSummary:
    videos: tuple[VideoSummary, ...]
    seconds: float
    codec: str

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.videos)

    @property
    def annotations(self) -> int:
        return sum(v.annotations for v in self.videos)


def video_codec() -> str:
    """H.264 when this PyAV build has libx264, MPEG-4 Part 2 otherwise."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


@contextmanager
def _mp4(path: Path, width: int, height: int, fps: float) -> Iterator[Callable[[np.ndarray], None]]:
    """An MP4 writer on one thread (the data set is made in parallel elsewhere, if at all)."""
    codec = video_codec()
    with av.open(str(path), mode="w") as container:
        stream = cast(VideoStream, container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001)))
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.thread_count = 1
        if codec == "libx264":
            ctx.options = {"crf": "18", "preset": "veryfast"}
        else:
            ctx.bit_rate = 4_000_000

        def add(image: np.ndarray) -> None:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))

        yield add
        container.mux(stream.encode(None))


def write_video(options: SynthOptions, index: int) -> VideoSummary:
    """Render video ``index`` and write its frames, MP4 and annotation file under ``options.out``."""
    split, seq, vid_id = options.split, sequence_name(options.seed, index), video_number(options.seed, index)
    scene = sample_scene(np.random.default_rng([options.seed, index]), options.spec)
    frame_dir = options.out / "images" / split / seq
    frame_dir.mkdir(parents=True, exist_ok=True)
    (options.out / "videos" / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    occluded_frames = blurred_frames = 0
    with _mp4(
        options.out / "videos" / split / f"{seq}.mp4", options.width, options.height, options.fps
    ) as add:
        for frame in range(options.frames):
            render = render_frame(scene, frame)
            ok, jpeg = cv2.imencode(".jpg", render.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {seq} frame {frame}")
            (frame_dir / f"{frame:06d}.jpg").write_bytes(jpeg.tobytes())
            add(render.image)
            ident = image_id(vid_id, frame)
            people = [
                person_annotation(
                    ident,
                    k,
                    render.keypoints[k],
                    render.in_frame[k],
                    render.occluded[k],
                    render.head_boxes[k],
                )
                for k in range(len(render.keypoints))
                if render.in_frame[k].any()
            ]
            occluded = any(p["occluded_joints"] for p in people)
            blurred = render.blurred
            occluded_frames += occluded
            blurred_frames += blurred
            size = (options.width, options.height)
            images.append(
                image_entry(
                    split,
                    seq,
                    vid_id,
                    frame,
                    options.frames,
                    size,
                    occluded,
                    blurred,
                    render.streak_px,
                    render.defocus_px,
                )
            )
            annotations += people
    ann_dir = options.out / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    document = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    (ann_dir / f"{seq}.json").write_text(json.dumps(document, separators=(",", ":")))
    return VideoSummary(seq, options.frames, len(annotations), occluded_frames, blurred_frames)


def generate_dataset(
    options: SynthOptions, progress: Callable[[VideoSummary], None] | None = None
) -> SynthSummary:
    """Write ``options.videos`` videos; ``progress`` hears about each one as it is done."""
    start = time.perf_counter()
    done = []
    for index in range(options.videos):
        summary = write_video(options, index)
        done.append(summary)
        if progress is not None:
            progress(summary)
    return SynthSummary(tuple(done), time.perf_counter() - start, video_codec())
