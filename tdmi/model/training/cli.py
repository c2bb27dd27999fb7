"""``tdmi train``: train a preset from a YAML config (under torchrun for several GPUs)."""

from __future__ import annotations

import argparse

from tdmi.model.training.config import load_config
from tdmi.model.training.trainer import train

__all__ = ["add_train_command"]


def _train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    result = train(cfg, resume=args.resume)
    if not result.is_main:
        return 0
    best = "no validation" if result.best_map is None else f"best val mAP {result.best_map:.2f}"
    print(f"trained {cfg.model.name}: {result.epoch} epochs, {result.step} steps, {best}")
    print(f"checkpoints (last.pt, best.pt) and metrics.csv in {result.out_dir}")
    return 0


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """Register ``train`` on the ``tdmi`` parser."""
    cmd = commands.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model. Several GPUs: torchrun --nproc_per_node N -m tdmi.service.cli train ...",
    )
    cmd.add_argument("--config", required=True, help="YAML file (see configs/)")
    cmd.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, parsed as YAML (repeatable), e.g. train.lr=5e-4",
    )
    cmd.add_argument("--resume", default=None, help="continue from a last.pt of an earlier run")
    cmd.set_defaults(run=_train)
