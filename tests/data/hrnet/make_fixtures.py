"""Generate the HRNet reference fixtures from the official HRNet code.

The official code is NOT part of this repository.  Get it separately (MIT licensed):

  * lib/models/pose_hrnet.py from github.com/leoxiaobin/deep-high-resolution-net.pytorch
  * lib/models/cls_hrnet.py  from github.com/HRNet/HRNet-Image-Classification

put both files in one directory and run, from the repository root:

    python tests/data/hrnet/make_fixtures.py --official-dir /path/to/dir/with/pose_hrnet.py/and/cls_hrnet.py

Writes, next to this script:

  * pose_hrnet_w32_keys.json, pose_hrnet_w48_keys.json, imagenet_hrnet_w32_keys.json:
    {"num_params": N, "state_dict": [[name, shape], ...]} in state-dict order.
  * pose_hrnet_w32_output.npz, pose_hrnet_w48_output.npz: arrays `input_shape` and
    `heatmaps` -- the official pose model in eval mode, filled with
    tests.helpers.weights.deterministic_state_dict, applied to
    deterministic_input((2, 3, 96, 64), seed=0).

See tests/data/SOURCES.md for the commits the committed fixtures came from.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
INPUT_SHAPE = (2, 3, 96, 64)


def _stage(n_modules: int, channels: list[int], block: str = "BASIC") -> dict:
    return {
        "NUM_MODULES": n_modules,
        "NUM_BRANCHES": len(channels),
        "BLOCK": block,
        "NUM_BLOCKS": [4] * len(channels),
        "NUM_CHANNELS": list(channels),
        "FUSE_METHOD": "SUM",
    }


def _extra(width: int) -> dict:
    """The STAGE2-4 settings shared by the COCO pose and ImageNet experiment yamls."""
    c = [width * 2**i for i in range(4)]
    return {"STAGE2": _stage(1, c[:2]), "STAGE3": _stage(4, c[:3]), "STAGE4": _stage(3, c)}


def pose_cfg(width: int) -> dict:
    """Minimal stand-in for experiments/coco/hrnet/w{32_256x192,48_384x288}_adam_lr1e-3.yaml."""
    extra = _extra(width)
    extra["FINAL_CONV_KERNEL"] = 1
    extra["PRETRAINED_LAYERS"] = ["*"]
    return {"MODEL": {"NUM_JOINTS": 17, "INIT_WEIGHTS": False, "PRETRAINED": "", "EXTRA": extra}}


def cls_cfg(width: int) -> dict:
    """Minimal stand-in for experiments/cls_hrnet_w32_sgd_lr5e-2_wd1e-4_bs32_x100.yaml."""
    extra = _extra(width)
    extra["STAGE1"] = _stage(1, [64], block="BOTTLENECK")
    return {"MODEL": {"EXTRA": extra}}


def describe(model: torch.nn.Module) -> dict:
    return {
        "num_params": sum(p.numel() for p in model.parameters()),
        "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({obj['num_params']} params, {len(obj['state_dict'])} keys)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--official-dir",
        required=True,
        type=Path,
        help="directory holding the official pose_hrnet.py and cls_hrnet.py",
    )
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args()

    sys.path.insert(0, str(args.official_dir.resolve()))
    sys.path.insert(0, str(REPO_ROOT))
    pose_hrnet = importlib.import_module("pose_hrnet")
    cls_hrnet = importlib.import_module("cls_hrnet")
    from tests.helpers.weights import deterministic_input, deterministic_state_dict

    torch.manual_seed(0)
    for width in (32, 48):
        model = pose_hrnet.get_pose_net(pose_cfg(width), is_train=False)
        info = describe(model)
        write_json(args.out_dir / f"pose_hrnet_w{width}_keys.json", info)

        shapes = {name: tuple(shape) for name, shape in info["state_dict"]}
        model.load_state_dict(deterministic_state_dict(shapes), strict=True)
        model.eval()
        with torch.no_grad():
            heatmaps = model(deterministic_input(INPUT_SHAPE, seed=0))
        out = args.out_dir / f"pose_hrnet_w{width}_output.npz"
        np.savez_compressed(
            out,
            input_shape=np.array(INPUT_SHAPE, dtype=np.int64),
            heatmaps=heatmaps.numpy().astype(np.float32),
        )
        print(f"wrote {out} heatmaps {tuple(heatmaps.shape)}")

    # get_cls_net also runs init_weights() (random init, no file loaded); only keys matter here.
    model = cls_hrnet.get_cls_net(cls_cfg(32))
    write_json(args.out_dir / "imagenet_hrnet_w32_keys.json", describe(model))


if __name__ == "__main__":
    main()
