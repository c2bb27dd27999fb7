"""``tdmi convert``: bring other annotation formats into the PoseTrack 2018 format we read."""

from __future__ import annotations

import argparse

from tdmi.model.data.posetrack17 import convert_posetrack17

__all__ = ["add_convert_command"]


def _posetrack17(args: argparse.Namespace) -> int:
    written = convert_posetrack17(args.src, args.out)
    frames = sum(len(video["images"]) for video in written.values())
    people = sum(len(video["annotations"]) for video in written.values())
    print(f"{args.src} -> {args.out}: {len(written)} videos, {frames} frames, {people} people")
    return 0


def add_convert_command(commands: argparse._SubParsersAction) -> None:
    """Register ``convert posetrack17 --src DIR --out DIR`` on the ``tdmi`` parser."""
    convert = commands.add_parser("convert", help="convert annotations to the PoseTrack 2018 format")
    formats = convert.add_subparsers(dest="format", required=True)
    pt17 = formats.add_parser("posetrack17", help="PoseTrack 2017 'annolist' JSON files -> PoseTrack 2018")
    pt17.add_argument("--src", required=True, help="directory of PoseTrack 2017 per-video JSON files")
    pt17.add_argument("--out", required=True, help="directory for the PoseTrack 2018 files (same names)")
    pt17.set_defaults(run=_posetrack17)
