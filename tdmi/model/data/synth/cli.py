"""``tdmi synth``: write a synthetic multi-person video data set in PoseTrack 2018 layout."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from tdmi.model.data.synth.writer import SynthOptions, VideoSummary, generate_dataset

__all__ = ["add_synth_command", "parse_persons", "parse_size"]

_SIZE = re.compile(r"^(\d+)x(\d+)$")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> (320, 240)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f"--size must look like 320x240, got {text!r}")
    return int(match[1]), int(match[2])


def parse_persons(text: str) -> tuple[int, int]:
    """``"1-4"`` -> (1, 4); ``"3"`` -> (3, 3)."""
    match = _RANGE.match(text.strip())
    if match is None:
        raise ValueError(f"--persons must look like 1-4 or 3, got {text!r}")
    low = int(match[1])
    return low, int(match[2]) if match[2] is not None else low


def _synth(args: argparse.Namespace) -> int:
    width, height = parse_size(args.size)
    low, high = parse_persons(args.persons)
    options = SynthOptions(
        out=Path(args.out),
        videos=args.videos,
        split=args.split,
        frames=args.frames,
        width=width,
        height=height,
        fps=args.fps,
        min_persons=low,
        max_persons=high,
        seed=args.seed,
    )

    def report(video: VideoSummary) -> None:
        if not args.quiet:
            print(
                f"{video.sequence}: {video.frames} frames, {video.annotations} person boxes, "
                f"{video.occluded_frames} with occlusion, {video.blurred_frames} blurred"
            )

    summary = generate_dataset(options, report)
    print(
        f"wrote {len(summary.videos)} videos ({summary.frames} frames, {summary.annotations} person boxes, "
        f"{summary.codec}) to {options.out} in {summary.seconds:.1f} s"
    )
    return 0


def add_synth_command(commands: argparse._SubParsersAction) -> None:
    """Register ``synth`` on the ``tdmi`` parser."""
    synth = commands.add_parser(
        "synth",
        help="write synthetic multi-person videos with PoseTrack 2018 annotations",
        description="Frames go to DIR/images/SPLIT/SEQ/%06d.jpg, videos to DIR/videos/SPLIT/SEQ.mp4 and "
        "annotations to DIR/annotations/SPLIT/SEQ.json (official PoseTrack 2018 per-sequence format).",
    )
    synth.add_argument("--out", required=True, metavar="DIR", help="data set root")
    synth.add_argument("--videos", type=int, required=True, metavar="N", help="how many videos")
    synth.add_argument("--split", default="train", help="split folder name (default: train)")
    synth.add_argument("--frames", type=int, default=40, help="frames per video (default: 40)")
    synth.add_argument("--size", default="320x240", metavar="WxH", help="frame size (default: 320x240)")
    synth.add_argument("--fps", type=float, default=25.0, help="frame rate (default: 25)")
    synth.add_argument("--persons", default="1-4", metavar="MIN-MAX", help="people per video (default: 1-4)")
    synth.add_argument("--seed", type=int, default=0, help="0..999; use different seeds for train and val")
    synth.add_argument("--quiet", action="store_true", help="print only the final summary")
    synth.set_defaults(run=_synth)
