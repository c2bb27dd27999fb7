"""The model commands of ``tdmi``: info, import-hrnet, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tdmi.model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from tdmi.model.data.cli import add_convert_command
from tdmi.model.data.synth import add_synth_command
from tdmi.model.evaluation.cli import add_eval_commands
from tdmi.model.evaluation.predict import add_predict_command
from tdmi.model.export import export_model, relative_error, run_exported
from tdmi.model.presets import PRESETS, ModelPreset, build_model, get_preset, load_checkpoint
from tdmi.model.training.cli import add_train_command
from tdmi.model.training.experiment import add_experiment_command

__all__ = ["add_model_commands", "count_flops"]

# official HRNet checkpoints by the width of their first stage-2 branch
_HRNET_BY_WIDTH = {32: "hrnet-w32-256x192", 48: "hrnet-w48-384x288"}
EXPORT_TOLERANCE = 1e-4


def count_flops(net: nn.Module, preset: ModelPreset) -> int:
    """Floating-point operations (a multiply-add counts 2) of one clip; ``net`` may be on meta."""
    device = next(net.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(torch.empty(preset.input_shape(1), device=device))
    return counter.get_total_flops()


def _info(args: argparse.Namespace) -> int:
    preset = get_preset(args.model)
    with torch.device("meta"):  # shapes only: no memory for the weights, no arithmetic
        net = preset.build()
    params = sum(p.numel() for p in net.parameters())
    h, w = preset.heatmap_size
    print(f"model:       {preset.name} ({preset.description})")
    print(f"parameters:  {params:,}")
    print(f"GFLOPs/clip: {count_flops(net, preset) / 1e9:.2f} (batch 1; multiply-add = 2 FLOPs)")
    print(f"input:       {tuple(preset.input_shape(1))} float32 RGB, ImageNet-normalised")
    print(f"output:      (1, {preset.layout.num_joints}, {h}, {w}) heatmaps, {preset.layout.name} joints")
    return 0


def _import_hrnet(args: argparse.Namespace) -> int:
    ckpt = read_checkpoint(args.checkpoint)
    if not ckpt.is_hrnet:
        raise CheckpointError(f"{args.checkpoint}: not an HRNet checkpoint (no conv1/layer1 keys)")
    name = args.model
    if name is None:
        width = ckpt.state_dict["stage2.0.branches.0.0.conv1.weight"].shape[0]
        if width not in _HRNET_BY_WIDTH:
            raise CheckpointError(f"HRNet width {width} has no preset; pass --model")
        name = _HRNET_BY_WIDTH[width]
    preset = get_preset(name)
    net = preset.build()
    report = load_checkpoint(net, preset, args.checkpoint)
    save_checkpoint(net, args.out, preset.name, source=str(Path(args.checkpoint).name))
    print(f"{args.checkpoint} -> {args.out} as {preset.name}: {report.summary()}")
    return 0


def _export(args: argparse.Namespace) -> int:
    preset = get_preset(args.model)
    net = build_model(preset.name, args.checkpoint)
    example = torch.randn(preset.input_shape(2))
    path = export_model(net, example, args.out, args.format)
    check = torch.randn(preset.input_shape(3))
    with torch.no_grad():
        reference = net(check).numpy()
    error = relative_error(run_exported(path, args.format, check), reference)
    print(
        f"wrote {path} ({args.format}, batch axis dynamic); relative error vs eager at batch 3: {error:.2e}"
    )
    if error > EXPORT_TOLERANCE:
        print(
            f"tdmi: error: exported model differs from eager PyTorch (relative error {error:.2e})",
            file=sys.stderr,
        )
        return 1
    return 0


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Register the model subcommands on the ``tdmi`` parser."""
    names = ", ".join(PRESETS)
    info = commands.add_parser("info", help="parameters, GFLOPs and shapes of a model preset")
    info.add_argument("model", help=f"preset: {names}")
    info.set_defaults(run=_info)

    imp = commands.add_parser("import-hrnet", help="check an official HRNet file and write our checkpoint")
    imp.add_argument("checkpoint", help="official HRNet .pth (pose or ImageNet)")
    imp.add_argument("--out", required=True, help="where to write our checkpoint")
    imp.add_argument("--model", default=None, help="preset to import into (default: by the file's width)")
    imp.set_defaults(run=_import_hrnet)

    exp = commands.add_parser("export", help="export a model to ONNX or TorchScript and check it")
    exp.add_argument("--model", required=True, help=f"preset: {names}")
    exp.add_argument("--checkpoint", default=None, help="weights (ours or official HRNet)")
    exp.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    exp.add_argument("--out", required=True, help="output file")
    exp.set_defaults(run=_export)

    add_convert_command(commands)
    add_synth_command(commands)
    add_experiment_command(commands)
    add_eval_commands(commands)
    add_train_command(commands)
    add_predict_command(commands)
