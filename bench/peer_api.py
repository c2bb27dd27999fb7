"""The pose model behind LitServe, as a LitServe user would serve it: the peer of ``bench peer``.

    python -m bench.peer_api --port P --model NAME[=CKPT] --max-batch 4 --batch-timeout 0.005
                             [--backend torch|onnxruntime] [--cache-dir DIR]

One request is one frame of one live stream: ``{"stream", "frame", "jpeg" (base64), "boxes"}``.
The API keeps each stream's last frames (LitServe runs ``decode_request`` in its one inference
worker, in arrival order), cuts each person's clip t-d..t on the CPU with the training warp (a
missing or future neighbour is the key frame, as in our live mode with lookahead 0), and lets
LitServe's dynamic batching put the clips of several frames into one forward pass. The reply
is the persons' keypoints in image pixels. Same model, same runtime (our backend classes), same
precision, same threads as ours.
(No postponed annotations here: LitServe reads ``decode_request``'s annotation to parse bodies.)
"""

import argparse
import base64
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import litserve as ls
import numpy as np
import torch
from pydantic import BaseModel

from bench.hardware import parse_model_spec
from tdmi.model.codec import decode_heatmaps
from tdmi.model.geometry import apply_affine, box_to_crop, crop_affine, invert_affine
from tdmi.model.inputs import IMAGENET_MEAN, IMAGENET_STD
from tdmi.model.presets import build_model
from tdmi.service.inference.backends import BackendKind, make_backend

__all__ = ["FrameRequest", "PoseAPI"]

_MEAN = np.array(IMAGENET_MEAN, np.float32) * 255.0
_STD = np.array(IMAGENET_STD, np.float32) * 255.0
_KEPT_FRAMES = 64  # per stream: enough for any arrival order of a few frames in flight


class FrameRequest(BaseModel):
    """One frame of one stream, as the peer's HTTP API takes it."""

    stream: int
    frame: int
    jpeg: str  # base64
    boxes: list[list[float]]


class PoseAPI(ls.LitAPI):
    """Frames in, keypoints out; clips of every request in a batch share one forward pass."""

    def __init__(self, spec: str, threads: int, backend: BackendKind, cache_dir: Path, **batching: Any):
        super().__init__(**batching)
        self.model_spec = spec
        self.threads = threads
        self.backend_kind = backend
        self.cache_dir = cache_dir

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        self.preset, checkpoint = parse_model_spec(self.model_spec)
        network = build_model(self.preset.name, checkpoint).eval()
        cpu = torch.device("cpu")
        self.backend = make_backend(
            self.backend_kind, network, self.preset, cpu, "fp32", self.cache_dir, "peer", threads=self.threads
        )
        self.d = (self.preset.num_frames - 1) // 2
        self.frames: dict[int, OrderedDict[int, np.ndarray]] = {}

    def decode_request(self, request: FrameRequest) -> tuple[np.ndarray, list[np.ndarray]]:
        """The request's person clips (K, T, 3, h, w), normalised, and their inverse warps."""
        jpeg = np.frombuffer(base64.b64decode(request.jpeg), np.uint8)
        image = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        kept = self.frames.setdefault(request.stream, OrderedDict())
        t = request.frame
        kept[t] = image
        while len(kept) > _KEPT_FRAMES:
            kept.popitem(last=False)
        frames = [kept.get(i, image) for i in range(t - self.d, t + 1)] + [image] * self.d
        if not self.preset.multi_frame:
            frames = [image]
        h, w = self.preset.input_size
        clips, inverses = [], []
        for box in request.boxes:
            affine = crop_affine(box_to_crop(np.asarray(box, np.float32), w / h), (w, h))
            crops = [cv2.warpAffine(f, affine, (w, h), flags=cv2.INTER_LINEAR) for f in frames]
            clips.append(((np.stack(crops).astype(np.float32) - _MEAN) / _STD).transpose(0, 3, 1, 2))
            inverses.append(invert_affine(affine))
        return np.stack(clips), inverses

    def batch(self, inputs: list[tuple[np.ndarray, list[np.ndarray]]]) -> tuple[torch.Tensor, list[Any]]:
        clips = torch.from_numpy(np.concatenate([clip for clip, _ in inputs]))
        return clips, [(len(clip), inverses) for clip, inverses in inputs]

    @torch.inference_mode()
    def predict(self, batch: tuple[torch.Tensor, list[Any]]) -> list[np.ndarray]:
        clips, requests = batch
        x = clips if self.preset.multi_frame else clips[:, 0]
        heatmaps = self.backend(x).float()
        coords, scores = decode_heatmaps(heatmaps)
        h, w = self.preset.input_size
        stride = np.array([w / heatmaps.shape[3], h / heatmaps.shape[2]])
        points, confidences = coords.numpy() * stride, scores.numpy()
        out, start = [], 0
        for count, inverses in requests:
            persons = [
                np.concatenate([apply_affine(points[start + k], inv), confidences[start + k][:, None]], 1)
                for k, inv in enumerate(inverses)
            ]
            out.append(np.stack(persons))
            start += count
        return out

    def unbatch(self, output: list[np.ndarray]) -> list[np.ndarray]:
        return output

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"keypoints": output.round(2).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True, help="NAME[=CHECKPOINT]")
    parser.add_argument("--max-batch", type=int, required=True, help="requests (frames) per batch")
    parser.add_argument("--batch-timeout", type=float, required=True, help="seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in the worker")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()), help="where ONNX files are exported"
    )
    args = parser.parse_args()
    api = PoseAPI(
        args.model,
        args.threads,
        args.backend,
        args.cache_dir,
        max_batch_size=args.max_batch,
        batch_timeout=args.batch_timeout,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=600)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
