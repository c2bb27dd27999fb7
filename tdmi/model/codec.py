"""Heatmap encoding (Gaussian targets) and decoding (argmax + quarter-pixel refinement).

Decoding is written in torch so that the service can run it on the device in the batch and
return only small arrays; it scripts with TorchScript.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import numpy as np
import torch

__all__ = ["decode_heatmaps", "flip_back", "flip_heatmaps", "flip_test", "gaussian_targets"]


def gaussian_targets(
    keypoints: np.ndarray,
    visible: np.ndarray,
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one unnormalised Gaussian (peak 1) per joint at its sub-pixel location.

    ``keypoints`` (J, 2) are in heatmap pixels, ``visible`` (J,) is > 0 for labelled joints,
    ``heatmap_size`` is (w, h). Returns targets (J, h, w) float32 and weights (J,) float32: a
    joint weighs 0 when it is unlabelled or its Gaussian lies wholly outside the heatmap.
    """
    w, h = heatmap_size
    xs = np.arange(w, dtype=np.float32)[None, None, :]
    ys = np.arange(h, dtype=np.float32)[None, :, None]
    kx = keypoints[:, 0, None, None].astype(np.float32)
    ky = keypoints[:, 1, None, None].astype(np.float32)
    targets = np.exp(-((xs - kx) ** 2 + (ys - ky) ** 2) / (2 * sigma**2)).astype(np.float32)
    reach = 3 * sigma
    inside = (
        (keypoints[:, 0] > -reach)
        & (keypoints[:, 0] < w - 1 + reach)
        & (keypoints[:, 1] > -reach)
        & (keypoints[:, 1] < h - 1 + reach)
    )
    weights = ((visible > 0) & inside).astype(np.float32)
    targets *= weights[:, None, None]
    return targets, weights


def decode_heatmaps(heatmaps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, J, h, w) heatmaps -> coordinates (B, J, 2) in heatmap pixels and scores (B, J).

    The argmax is moved a quarter pixel toward its larger neighbour along each axis, as in
    HRNet's decoder, which halves the expected quantisation error.
    """
    b, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, h * w)
    scores, index = flat.max(dim=2)
    px = index % w
    py = torch.div(index, w, rounding_mode="floor")
    dx = _neighbour_sign(flat, index, px, 1, w)
    dy = _neighbour_sign(flat, index, py, w, h)
    coords = torch.stack((px.to(heatmaps.dtype) + 0.25 * dx, py.to(heatmaps.dtype) + 0.25 * dy), dim=2)
    return coords, scores


def _neighbour_sign(
    flat: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, step: int, size: int
) -> torch.Tensor:
    """sign(next - previous) around the peak along one axis; 0 at the border."""
    interior = (pos > 0) & (pos < size - 1)
    after = flat.gather(2, (index + step).clamp(max=flat.shape[2] - 1).unsqueeze(2)).squeeze(2)
    before = flat.gather(2, (index - step).clamp(min=0).unsqueeze(2)).squeeze(2)
    return torch.sign(after - before) * interior.to(flat.dtype)


def flip_heatmaps(heatmaps: torch.Tensor, flip_index: List[int]) -> torch.Tensor:
    """Mirror heatmaps left-right and swap paired joints."""
    return heatmaps.flip(3)[:, flip_index]


def flip_back(heatmaps: torch.Tensor, flip_index: List[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps predicted on a mirrored input, brought back to the original orientation.

    ``shift`` moves them one pixel right, as HRNet's flip test does, because mirroring a
    stride-4 feature map is off by one input pixel group.
    """
    out = flip_heatmaps(heatmaps, flip_index)
    if shift:
        out = torch.cat((out[..., :1], out[..., :-1]), dim=3)
    return out


def flip_test(
    model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, flip_index: List[int]
) -> torch.Tensor:
    """Average of the heatmaps of the input and of its mirror image brought back.

    Works for single-frame (B, 3, H, W) and clip (B, T, 3, H, W) inputs: width is the last axis.
    """
    heatmaps = model(inputs)
    mirrored = model(inputs.flip(-1))
    return 0.5 * (heatmaps + flip_back(mirrored, flip_index))
