"""Person crops: on a GPU each frame is uploaded once and every clip is warped from it there; on a
CPU each crop is warped straight from the uint8 frame.

The warp is the same affine the training data uses (``tdmi.model.geometry.crop_affine``). On a GPU it
runs as ``grid_sample``, so that a batch of clips from many streams is cut out in a few kernel
calls; sampling pixel centres with ``align_corners=False`` matches ``cv2.warpAffine``. On a CPU
``cv2.warpAffine`` itself is several times cheaper: it reads only the pixels a crop needs, in
uint8, where the device path converts every whole frame to float first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tdmi.model.geometry import box_to_crop, crop_affine, invert_affine

__all__ = ["crop_clips", "crop_clips_cpu", "cut_clips", "input_to_image_affines", "upload_frame"]


def upload_frame(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 in [0, 1] on ``device``, one copy over the bus.

    To a GPU the uint8 frame goes from pinned (page-locked) memory with a non-blocking copy: the
    host goes on uploading and cropping the batch's other frames while the copy runs (a copy
    from pageable memory would wait). The caching host allocator keeps the pinned block until
    the copy is done.
    """
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True).permute(2, 0, 1).float().div_(255.0)


def input_to_image_affines(boxes: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) xyxy boxes -> (N, 2, 3) matrices mapping model-input pixels to image pixels."""
    h, w = input_size
    out = np.empty((len(boxes), 2, 3), dtype=np.float64)
    for i, box in enumerate(boxes):
        out[i] = invert_affine(crop_affine(box_to_crop(box, w / h), (w, h)))
    return out


def crop_clips(
    frames: dict[Hashable, torch.Tensor],
    clip_frames: Sequence[Sequence[Hashable]],
    affines: torch.Tensor,
    input_size: tuple[int, int],
) -> torch.Tensor:
    """Cut (B, T, 3, h, w) crops: clip ``b`` samples frames ``clip_frames[b]`` through ``affines[b]``.

    ``frames`` maps a frame key to its uploaded (3, H, W) tensor; ``affines`` (B, 2, 3) map input
    pixels to image pixels. Pixels outside the image are 0 (black), as in training.
    """
    h, w = input_size
    batch, length = len(clip_frames), len(clip_frames[0])
    device = affines.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    dst = torch.stack((xs, ys, torch.ones_like(xs)), dim=-1).reshape(1, h * w, 3)
    src = dst @ affines.float().transpose(1, 2)  # (B, h*w, 2) image pixel coordinates
    out = torch.zeros(batch, length, 3, h, w, device=device)
    users: dict[Hashable, list[tuple[int, int]]] = {}
    for b, keys in enumerate(clip_frames):
        for t, key in enumerate(keys):
            users.setdefault(key, []).append((b, t))
    for key, slots in users.items():
        frame = frames[key]
        size = torch.tensor([frame.shape[2], frame.shape[1]], device=device, dtype=torch.float32)
        b_index = torch.tensor([b for b, _ in slots], device=device)
        t_index = torch.tensor([t for _, t in slots], device=device)
        grid = (2.0 * src[b_index] + 1.0) / size - 1.0
        sampled = F.grid_sample(
            frame.unsqueeze(0).expand(len(slots), -1, -1, -1),
            grid.reshape(len(slots), h, w, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )
        out[b_index, t_index] = sampled
    return out


def crop_clips_cpu(
    frames: dict[Hashable, np.ndarray],
    clip_frames: Sequence[Sequence[Hashable]],
    affines: np.ndarray,
    input_size: tuple[int, int],
) -> torch.Tensor:
    """``crop_clips`` on the CPU from (H, W, 3) uint8 frames with ``cv2.warpAffine``: (B, T, 3, h, w)
    uint8 (a view of HWC crops; ``normalize`` takes it), pixels outside the image 0. ``affines``
    (B, 2, 3) map input to image pixels. A frame that stands in more than once in a clip (the key
    frame for missing neighbours: a live clip at lookahead 0 holds it d + 1 times) is warped once."""
    h, w = input_size
    crops = np.empty((len(clip_frames), len(clip_frames[0]), h, w, 3), dtype=np.uint8)
    for b, keys in enumerate(clip_frames):
        first: dict[Hashable, int] = {}
        for t, key in enumerate(keys):
            if key in first:
                crops[b, t] = crops[b, first[key]]
                continue
            first[key] = t
            cv2.warpAffine(
                frames[key],
                affines[b],
                (w, h),
                dst=crops[b, t],
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
    return torch.from_numpy(crops).permute(0, 1, 4, 2, 3)


def cut_clips(
    images: dict[Hashable, np.ndarray],
    clip_frames: Sequence[Sequence[Hashable]],
    affines: np.ndarray,
    input_size: tuple[int, int],
    device: torch.device,
) -> torch.Tensor:
    """(B, T, 3, h, w) crops on ``device`` from (H, W, 3) uint8 frames, for ``normalize``: uint8 from
    cv2 on a CPU, float in [0, 1] from ``grid_sample`` on a GPU (each frame uploaded once).
    ``affines`` (B, 2, 3): input to image."""
    if device.type == "cpu":
        return crop_clips_cpu(images, clip_frames, affines, input_size)
    frames = {key: upload_frame(image, device) for key, image in images.items()}
    return crop_clips(frames, clip_frames, torch.from_numpy(affines).to(device), input_size)
