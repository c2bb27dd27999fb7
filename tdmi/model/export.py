"""Export to TorchScript and ONNX with a dynamic batch axis, and a parity check for both."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ExportFormat", "export_model", "relative_error", "run_exported"]

ExportFormat = Literal["onnx", "torchscript"]
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"
ONNX_OPSET = 18


def export_model(model: nn.Module, example: torch.Tensor, path: str | Path, fmt: ExportFormat) -> Path:
    """Write ``model`` (put in eval mode) for inputs shaped like ``example``, any batch size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if fmt == "torchscript":
        torch.jit.script(model).save(str(path))
    elif fmt == "onnx":
        # the batch of the example must not be 1: torch.export would specialise on it
        example = example.expand(max(example.shape[0], 2), *example.shape[1:]).contiguous()
        batch = torch.export.Dim("batch", min=1, max=4096)
        with warnings.catch_warnings(), _quiet_onnx_registry():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                opset_version=ONNX_OPSET,
                verbose=False,
            )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(path))
    else:
        raise ValueError(f"unknown export format {fmt!r}; use onnx or torchscript")
    return path


@contextlib.contextmanager
def _quiet_onnx_registry() -> Iterator[None]:
    """The exporter warns that torchvision's ops are unavailable; we use none of them."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_exported(
    path: str | Path, fmt: ExportFormat, inputs: torch.Tensor, device: str = "cpu"
) -> np.ndarray:
    """Run an exported file once (ONNX Runtime or ``torch.jit.load``) and return its heatmaps."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location=device)
        with torch.no_grad():
            return module(inputs.to(device)).cpu().numpy()
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    return session.run(None, {INPUT_NAME: inputs.cpu().numpy()})[0]


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """||actual - reference|| / ||reference||."""
    scale = max(float(np.linalg.norm(reference)), 1e-12)
    return float(np.linalg.norm(actual - reference)) / scale
