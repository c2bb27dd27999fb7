"""The model runner: device crops match training's warp, keypoints land back in image pixels,
padding to buckets changes nothing, and every backend gives the same keypoints. On a GPU: the crops
cut there (frames uploaded, ``grid_sample``) match the CPU's, and keypoints land the same."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tdmi.model.geometry import apply_affine, box_to_crop, crop_affine
from tdmi.model.presets import build_model, get_preset
from tdmi.service.inference.backends import Backend, make_backend
from tdmi.service.inference.buckets import bucket_chunks, bucket_sizes
from tdmi.service.inference.crops import (
    crop_clips,
    crop_clips_cpu,
    cut_clips,
    input_to_image_affines,
    upload_frame,
)
from tdmi.service.inference.runner import ModelRunner
from tdmi.service.inference.work import FrameWork

PRESET = get_preset("tdmi-tiny")
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _image(seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _works(boxes_per_frame: list[np.ndarray], first_stream: int = 0) -> list[FrameWork]:
    """One frame per entry, each from its own stream with its own three images."""

    async def make() -> list[FrameWork]:
        return [
            FrameWork(
                stream_id=f"s{i}",
                frame_index=0,
                images={k: _image(10 * i + k) for k in range(3)},
                clip=[0, 1, 2, 1, 2],
                boxes=boxes,
            )
            for i, boxes in enumerate(boxes_per_frame, start=first_stream)
        ]

    return asyncio.run(make())


def test_device_crops_match_the_training_warp() -> None:
    image = _image(0)
    box = np.array([[30.0, 20.0, 90.0, 110.0]])
    h, w = PRESET.input_size
    reference = cv2.warpAffine(image, crop_affine(box_to_crop(box[0], w / h), (w, h)), (w, h)) / 255.0
    affines = torch.from_numpy(input_to_image_affines(box, (h, w)))
    crops = crop_clips({"f": upload_frame(image, CPU)}, [["f"]], affines, (h, w))
    ours = crops[0, 0].permute(1, 2, 0).numpy()
    assert np.abs(ours - reference).mean() < 0.01  # cv2 rounds its weights to 1/32
    assert np.abs(ours - reference).max() < 0.05


def _crop_case() -> tuple[dict[str, np.ndarray], list[list[str]], np.ndarray]:
    """Two frames; boxes inside, across and beyond the frame's edges; one frame shared by two clips."""
    images = {"a": _image(1), "b": _image(2)}
    boxes = np.array([[30.0, 20.0, 90.0, 110.0], [-40.0, -10.0, 50.0, 90.0], [100.0, 60.0, 260.0, 200.0]])
    return images, [["a", "b"], ["b", "a"], ["a", "a"]], input_to_image_affines(boxes, PRESET.input_size)


def _grid_sample_on_cpu(
    images: dict[str, np.ndarray], clips: list[list[str]], affines: np.ndarray
) -> torch.Tensor:
    """The GPU path's crops, computed on the CPU."""
    frames = {k: upload_frame(v, CPU) for k, v in images.items()}
    return crop_clips(frames, clips, torch.from_numpy(affines), PRESET.input_size)


def _assert_near_cv2(crops: torch.Tensor, cv2_crops: torch.Tensor) -> None:
    difference = (crops - cv2_crops).abs()
    assert difference.mean() < 0.01  # cv2 rounds its interpolation weights to 1/32
    assert difference.max() < 0.1


def test_cpu_crops_match_the_device_path() -> None:
    """cv2 on the uint8 frames (the CPU path) against grid_sample (the GPU path, run here on the CPU)."""
    images, clips, affines = _crop_case()
    h, w = PRESET.input_size
    cpu = crop_clips_cpu(images, clips, affines, (h, w))
    device = _grid_sample_on_cpu(images, clips, affines)
    assert cpu.shape == device.shape == (3, 2, 3, h, w) and cpu.dtype == torch.uint8
    _assert_near_cv2(device, cpu.float() / 255)
    assert cpu[1, 0, :, :5, :5].max() == 0  # outside the frame: black, as in training
    assert torch.equal(cpu[2, 0], cpu[2, 1])  # a frame twice in a clip: warped once, the same crop


@pytest.mark.gpu
def test_gpu_crops_match_the_cpu_crops() -> None:
    """The whole GPU path (pinned upload, grid_sample on the device) against cv2 within the bounds
    above, and against the same grid_sample on the CPU to float32 rounding (1e-3 of a [0, 1] pixel)."""
    images, clips, affines = _crop_case()
    gpu = cut_clips(images, clips, affines, PRESET.input_size, CUDA)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    _assert_near_cv2(gpu.cpu(), crop_clips_cpu(images, clips, affines, PRESET.input_size).float() / 255)
    torch.testing.assert_close(gpu.cpu(), _grid_sample_on_cpu(images, clips, affines), rtol=0, atol=1e-3)


class _PeakAt:
    """A backend whose heatmaps peak where a fixed image point falls in each crop."""

    name = "peak"
    fixed_shapes = False

    def __init__(self, point: np.ndarray, boxes: np.ndarray):
        h, w = PRESET.heatmap_size
        self.peaks = [apply_affine(point, crop_affine(box_to_crop(b, 0.75), (w, h))) for b in boxes]

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        h, w = PRESET.heatmap_size
        grid = (torch.arange(h, device=inputs.device).float(), torch.arange(w, device=inputs.device).float())
        ys, xs = torch.meshgrid(*grid, indexing="ij")
        out = torch.zeros(len(inputs), PRESET.layout.num_joints, h, w, device=inputs.device)
        for i, (px, py) in enumerate(self.peaks[: len(inputs)]):
            out[i] = torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / 2.0)
        return out


@pytest.mark.parametrize("device", [CPU, pytest.param(CUDA, marks=pytest.mark.gpu)], ids=str)
def test_keypoints_come_back_in_image_pixels(device: torch.device) -> None:
    """On a GPU the crops, decoding and the way back to image pixels run on the device's streams."""
    point = np.array([61.3, 57.8])
    boxes = np.array([[30.0, 20.0, 90.0, 110.0], [40.0, 30.0, 100.0, 100.0], [20.0, 10.0, 120.0, 115.0]])
    runner = ModelRunner(PRESET, _PeakAt(point, boxes), device, max_batch=4)
    (poses,) = runner.run(_works([boxes]))
    assert poses.keypoints.shape == (3, PRESET.layout.num_joints, 3)
    # a heatmap pixel covers about 4 input pixels; the quarter-pixel refinement keeps us well inside one
    crop_px = np.array([box_to_crop(b, 0.75).width / PRESET.heatmap_size[1] for b in boxes])
    error = np.linalg.norm(poses.keypoints[:, :, :2] - point, axis=2)
    assert (error < 0.5 * crop_px[:, None]).all()
    assert (poses.keypoints[:, :, 2] > 0.6).all()  # the peak value of an off-grid Gaussian


def test_bucket_chunks_slice_together_and_pad_with_zeros_to_a_bucket() -> None:
    first, second = torch.arange(11.0), -torch.arange(11.0).unsqueeze(1)
    chunks = list(bucket_chunks([first, second], [1, 2, 4]))
    assert [real for _, real in chunks] == [4, 4, 3]
    assert [len(parts[0]) for parts, _ in chunks] == [4, 4, 4]  # 3 padded to the bucket of 4
    (last_first, last_second), _ = chunks[-1]
    assert last_first.tolist() == [8.0, 9.0, 10.0, 0.0] and last_second[:, 0].tolist() == [
        -8.0,
        -9.0,
        -10.0,
        0.0,
    ]
    assert [len(p[0]) for p, _ in bucket_chunks([torch.zeros(1)], [1, 2, 4])] == [1]


def test_buckets_and_padding_do_not_change_results() -> None:
    assert bucket_sizes(16) == [1, 2, 4, 8, 16]
    assert bucket_sizes(12) == [1, 2, 4, 8, 12]
    net = build_model("tdmi-tiny")
    from tests.helpers.weights import randomize

    randomize(net)
    backend = make_backend("torch", net, PRESET, CPU, "fp32", Path("unused"), "test")
    boxes = [
        np.array([[10.0, 10, 80, 110], [50, 5, 150, 115], [0, 0, 60, 60]]),
        np.array([[20.0, 30, 70, 90]]),
    ]
    together = ModelRunner(PRESET, backend, CPU, max_batch=4).run(_works(boxes))
    alone = [
        ModelRunner(PRESET, backend, CPU, max_batch=1).run(_works([b], i))[0] for i, b in enumerate(boxes)
    ]
    assert len(together) == 2
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


class _Recording:
    """A backend that records the batch sizes it is given and passes them on."""

    def __init__(self, backend: Backend):
        self.backend, self.name, self.fixed_shapes = backend, backend.name, backend.fixed_shapes
        self.sizes: list[int] = []

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(inputs))
        return self.backend(inputs)


def test_a_batch_runs_at_its_exact_size_unless_the_runtime_specialises_on_shapes() -> None:
    """Padding 3 clips to a bucket of 4 is a quarter of the arithmetic wasted where nothing is
    compiled per shape (eager torch and ONNX Runtime on a CPU); TorchScript and torch.compile
    specialise on shapes, so they keep the few warmed bucket sizes."""
    net = build_model("tdmi-tiny")
    eager = make_backend("torch", net, PRESET, CPU, "fp32", Path("-"), "t")
    compiled = make_backend("torch", net, PRESET, CPU, "fp32", Path("-"), "t", compile=True)
    script = make_backend("torchscript", net, PRESET, CPU, "fp32", Path("-"), "t")
    assert (eager.fixed_shapes, compiled.fixed_shapes, script.fixed_shapes) == (False, True, True)
    three = np.array([[10.0, 10, 80, 110], [50, 5, 150, 115], [0, 0, 60, 60]])
    for backend, sizes, warmed in ((eager, [3], [1, 2, 4, 8]), (script, [4], [1, 2, 4, 8])):
        recording = _Recording(backend)
        runner = ModelRunner(PRESET, recording, CPU, max_batch=8)
        runner.warm_up()
        assert recording.sizes == warmed  # the buckets only, either way
        recording.sizes.clear()
        runner.run(_works([three]))
        assert recording.sizes == sizes


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torchscript", "onnxruntime"])
def test_backends_agree_with_eager(kind: str, tmp_path: Path) -> None:
    from tests.helpers.weights import randomize

    net = build_model("tdmi-tiny")
    randomize(net)
    boxes = [np.array([[10.0, 10, 80, 110], [50, 5, 150, 115]])]
    eager = ModelRunner(PRESET, make_backend("torch", net, PRESET, CPU, "fp32", tmp_path, "t"), CPU, 2)
    other = ModelRunner(PRESET, make_backend(kind, net, PRESET, CPU, "fp32", tmp_path, "t"), CPU, 2)
    other.warm_up()
    (a,) = eager.run(_works(boxes))
    (b,) = other.run(_works(boxes))
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-2)


def test_a_job_frame_gives_the_same_bits_alone_or_batched_with_others() -> None:
    """A batch's size changes a clip's last bits; a job frame must not depend on its batch."""
    from tests.helpers.weights import randomize

    backend = make_backend("torch", randomize(build_model("tdmi-tiny")), PRESET, CPU, "fp32", Path("-"), "t")
    runner = ModelRunner(PRESET, backend, CPU, max_batch=8)
    lone = np.array([[20.0, 30, 70, 90]])
    others = [
        np.array([[10.0, 10, 80, 110], [50, 5, 150, 115], [0, 0, 60, 60]]),
        np.array([[5.0, 5, 60, 100]]),
    ]
    (alone,) = runner.run(_works([lone]))
    batch = _works([lone, *others])
    batch[2].live = True  # a live frame in the same batch too
    together = runner.run(batch)
    np.testing.assert_array_equal(together[0].keypoints, alone.keypoints)
