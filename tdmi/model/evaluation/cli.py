"""``tdmi eval posetrack|coco``: score prediction files against ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tdmi.model.evaluation.coco import evaluate_coco
from tdmi.model.evaluation.posetrack import evaluate_posetrack_sequences
from tdmi.model.evaluation.posetrack_io import load_sequence_dirs
from tdmi.model.evaluation.smoothed import smooth_sequence
from tdmi.model.smoothing import OneEuroParams

__all__ = ["add_eval_commands"]


def _posetrack(args: argparse.Namespace) -> int:
    data = load_sequence_dirs(args.gt, args.pred)
    pred = {name: p for name, (_, p) in data.items()}
    if args.one_euro is not None:
        params = OneEuroParams(min_cutoff=args.one_euro[0], beta=args.one_euro[1])
        pred = {name: smooth_sequence(p, params, args.fps) for name, p in pred.items()}
    metrics = evaluate_posetrack_sequences({name: gt for name, (gt, _) in data.items()}, pred)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return 0
    print(f"{metrics.num_frames} labelled frames in {metrics.num_sequences} sequences")
    print(metrics.table())
    print(metrics.jitter_line())
    if metrics.tracking is None:
        print("no tracking metrics: they need a track_id on every prediction and a sequence of >= 2 frames")
    return 0


def _coco(args: argparse.Namespace) -> int:
    metrics = evaluate_coco(args.gt, args.pred)
    print(json.dumps(metrics.to_dict(), indent=2) if args.json else metrics.table())
    return 0


def add_eval_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``eval`` and its benchmarks on the ``tdmi`` parser."""
    evaluate = commands.add_parser("eval", help="score predictions: PoseTrack (poseval AP/MOTA) or COCO")
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True)

    posetrack = benchmarks.add_parser(
        "posetrack", help="PoseTrack 2018/21 AP and MOTA, as the official poseval computes them"
    )
    posetrack.add_argument("--gt", type=Path, required=True, help="folder of ground-truth <sequence>.json")
    posetrack.add_argument("--pred", type=Path, required=True, help="folder of predicted <sequence>.json")
    posetrack.add_argument("--json", action="store_true", help="print all numbers as JSON")
    posetrack.add_argument(
        "--one-euro",
        type=float,
        nargs=2,
        metavar=("MIN_CUTOFF", "BETA"),
        help="first smooth each predicted track as the service's smoothing=one_euro does",
    )
    posetrack.add_argument("--fps", type=float, default=25.0, help="frame rate for --one-euro (default 25)")
    posetrack.set_defaults(run=_posetrack)

    coco = benchmarks.add_parser("coco", help="COCO keypoint AP/AR (OKS) through pycocotools")
    coco.add_argument("--gt", type=Path, required=True, help="COCO person-keypoints annotation file")
    coco.add_argument("--pred", type=Path, required=True, help="COCO results file (a JSON list)")
    coco.add_argument("--json", action="store_true", help="print the numbers as JSON")
    coco.set_defaults(run=_coco)
