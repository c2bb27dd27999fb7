"""The model-input contract: uint8 and [0, 1] float images normalise to the same input."""

from __future__ import annotations

import numpy as np
import torch

from tdmi.model.inputs import IMAGENET_MEAN, IMAGENET_STD, normalize


def test_uint8_views_and_floats_normalise_alike() -> None:
    hwc = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8))
    view = hwc.permute(0, 3, 1, 2)  # (N, 3, H, W), not contiguous: as the CPU crops come
    from_uint8, from_float = normalize(view), normalize(view.float() / 255)
    assert from_uint8.dtype == torch.float32 and from_uint8.is_contiguous() and from_float.is_contiguous()
    torch.testing.assert_close(from_uint8, from_float, rtol=0, atol=1e-5)  # float rounding only
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(from_uint8, (view.float() / 255 - mean) / std, rtol=0, atol=1e-5)
