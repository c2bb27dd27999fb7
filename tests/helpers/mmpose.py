"""Files in the forms MMPose publishes its top-down HRNet checkpoints, made from an official-format
state dict: what ``tdmi weights pull`` fetches, without the internet.

0.x (mmcv ``publish_model``): ``{'meta': {...}, 'state_dict': {'backbone.*',
'keypoint_head.final_layer.*'}}``. 1.x (mmengine): the same, with ``head.final_layer.*`` and a
``dataset_meta`` that names the dataset and holds numpy arrays (the joints' OKS sigmas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["mmpose_state_dict", "write_mmpose_checkpoint"]


def mmpose_state_dict(
    official: dict[str, torch.Tensor], version: Literal["0.x", "1.x"]
) -> dict[str, torch.Tensor]:
    head = "keypoint_head." if version == "0.x" else "head."
    return {
        (head + key if key.startswith("final_layer.") else "backbone." + key): value
        for key, value in official.items()
    }


def write_mmpose_checkpoint(
    official: dict[str, torch.Tensor],
    path: Path,
    version: Literal["0.x", "1.x"],
    dataset: str = "coco",
) -> Path:
    if version == "0.x":
        meta: dict[str, object] = {
            "mmpose_version": "0.29.0",
            "epoch": 20,
            "iter": 8000,
            "config": "model = dict(...)",
        }
    else:
        meta = {
            "epoch": 210,
            "mmengine_version": "0.8.4",
            "dataset_meta": {
                "dataset_name": dataset,
                "num_keypoints": 17,
                "flip_indices": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15],
                "sigmas": np.full(17, 0.079, dtype=np.float32),
            },
        }
    torch.save({"meta": meta, "state_dict": mmpose_state_dict(official, version)}, path)
    return path
