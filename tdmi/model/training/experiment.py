"""``tdmi experiment temporal-gain``: the paper's claim in miniature, measured fairly on a CPU.

Four arms start from one pretrained single-frame ``hrnet-tiny`` checkpoint and train with the same
seeded data order and augmentations, the same number of steps and the same schedule (a learning
rate drop for the last epoch):

1. ``single``: ``hrnet-tiny``, single-frame;
2. ``tdmi_alpha0``: ``tdmi-tiny`` with the heatmap loss alone (alpha 0);
3. ``tdmi_alpha1``: ``tdmi-tiny`` with the full objective at the paper's alpha = 1;
4. ``tdmi_static``: ``tdmi-tiny`` (alpha 0) on static clips, the key frame repeated, in training
   and evaluation: the same capacity without motion.

``tdmi_alpha1_no_un`` (alpha 1 without I(Mu; Mn)) is a diagnostic arm, run on request
(``--arms``): it tells whether that term is what costs alpha 1 its accuracy.

Each is evaluated once, after its last step (no checkpoint picked on the held-out videos), with
ground-truth boxes on held-out synthetic videos whose seed training never used: mAP overall, on
occluded joints, blurred frames and clean frames (``tdmi.model.evaluation.subsets``), with paired
bootstrap 95 % intervals over videos for (2)-(1), (3)-(2) and (2)-(4).

Stages (each skips what an earlier run finished, so the command can be rerun after a stop):
``data`` writes the synthetic train and held-out sets, ``pretrain`` trains the shared start
(unless ``--pretrained`` gives one), ``train`` trains the arms, ``evaluate`` writes
``results-seed<N>.json`` and ``.md`` (N the held-out seed, ``--heldout-seed``); ``all`` runs
them in order. Every arm's ``metrics.csv`` holds its step times; ``timings.json`` their means.

Arms named ``tdmi_alpha<A>`` or ``tdmi_alpha<A>_margin<M>`` sweep alpha and the I(Mu; Mn)
margin; each is compared with ``tdmi_alpha0`` when both are evaluated.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.data.synth import SynthOptions, generate_dataset
from tdmi.model.evaluation.posetrack import evaluate_posetrack_sequences
from tdmi.model.evaluation.predict import posetrack_results, predict_people
from tdmi.model.evaluation.subsets import SUBSETS, mean_ap, paired_bootstrap, subset_matches
from tdmi.model.jsonfile import read_json
from tdmi.model.presets import load_checkpoint
from tdmi.model.tdmi import TDMIConfig
from tdmi.model.training.config import TrainConfig, validate_config
from tdmi.model.training.metrics_log import read_metrics
from tdmi.model.training.trainer import build_network, train

__all__ = [
    "ARMS",
    "COMPARISONS",
    "Arm",
    "ExperimentPlan",
    "add_experiment_command",
    "arm",
    "comparisons",
    "run_experiment",
]


@dataclass(frozen=True)
class Arm:
    model: str
    alpha: float
    static: bool = False
    mutual_info: tuple[tuple[str, float], ...] = ()  # changes to loss.mutual_info


ARMS = {
    "single": Arm("hrnet-tiny", 0.0),
    "tdmi_alpha0": Arm("tdmi-tiny", 0.0),
    "tdmi_alpha1": Arm("tdmi-tiny", 1.0),  # the paper's alpha
    "tdmi_static": Arm("tdmi-tiny", 0.0, static=True),
    "tdmi_alpha1_no_un": Arm("tdmi-tiny", 1.0, mutual_info=(("useful_noisy", 0.0),)),
}
DEFAULT_ARMS = ("single", "tdmi_alpha0", "tdmi_alpha1", "tdmi_static")
_SWEPT = re.compile(r"tdmi_alpha(?P<alpha>\d+(?:\.\d+)?)(?:_margin(?P<margin>\d+(?:\.\d+)?))?")
COMPARISONS = (
    ("tdmi_alpha0", "single"),
    ("tdmi_alpha1", "tdmi_alpha0"),
    ("tdmi_alpha0", "tdmi_static"),
    ("tdmi_alpha1_no_un", "tdmi_alpha1"),
)


def arm(name: str) -> Arm:
    """A named arm, or a swept one: ``tdmi_alpha<A>`` and ``tdmi_alpha<A>_margin<M>`` (the
    I(Mu; Mn) margin in nats per joint; 0 switches the hinge's push off)."""
    if name in ARMS:
        return ARMS[name]
    swept = _SWEPT.fullmatch(name)
    if swept is None:
        raise ValueError(
            f"unknown arm {name!r}; arms: {', '.join(ARMS)}, tdmi_alpha<A>, tdmi_alpha<A>_margin<M>"
        )
    margin = swept["margin"]
    return Arm("tdmi-tiny", float(swept["alpha"]), mutual_info=(("margin", float(margin)),) if margin else ())


def comparisons(arms: Sequence[str]) -> list[tuple[str, str]]:
    """The fixed comparisons among ``arms``; every swept arm with alpha > 0 against alpha 0, and a
    changed margin against the same alpha's default margin."""
    pairs = [(a, b) for a, b in COMPARISONS if a in arms and b in arms]
    for name in arms:
        swept = _SWEPT.fullmatch(name)
        if name in ARMS or swept is None or float(swept["alpha"]) == 0:
            continue
        default_margin = f"tdmi_alpha{swept['alpha']}"
        pairs += [
            (name, other) for other in ("tdmi_alpha0", default_margin) if other in arms and other != name
        ]
    return pairs


def _arm_name(name: str) -> str:
    """argparse type: an arm name, checked."""
    try:
        arm(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


STAGES = ("data", "pretrain", "train", "evaluate")
_DONE = "done.json"


@dataclass(frozen=True)
class ExperimentPlan:
    """Sizes and seeds of one experiment; ``max_steps`` and ``pretrain_steps`` cut it short (pilot)."""

    out: Path
    train_videos: int = 64
    heldout_videos: int = 24
    frames: int = 40
    width: int = 320
    height: int = 240
    train_seed: int = 11
    heldout_seed: int = 12  # never used for training anywhere in this repository
    pretrain_epochs: int = 4
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    max_steps: int | None = None
    pretrain_steps: int | None = None
    pretrained: Path | None = None
    num_workers: int = 1
    bootstrap: int = 1000
    arms: tuple[str, ...] = field(default=DEFAULT_ARMS)

    def __post_init__(self) -> None:
        if self.train_seed == self.heldout_seed:
            raise ValueError("the held-out videos need a seed of their own")
        for name in self.arms:
            arm(name)  # raises on an unknown name
        if self.epochs < 1 or self.pretrain_epochs < 1:
            raise ValueError("epochs must be >= 1")

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def heldout(self) -> Path:
        """The held-out annotations: one folder per seed, so a fresh seed sits beside the first."""
        return self.data / "annotations" / self.heldout_split

    @property
    def heldout_split(self) -> str:
        return f"heldout-seed{self.heldout_seed}"

    @property
    def results_stem(self) -> str:
        """``results-seed<N>``: each held-out seed's results are kept apart."""
        return f"results-seed{self.heldout_seed}"

    @property
    def start_checkpoint(self) -> Path:
        return self.pretrained if self.pretrained is not None else self.out / "pretrain" / "last.pt"


def _milestones(epochs: int) -> list[int]:
    """The learning rate drops tenfold for the last epoch (none for a single epoch)."""
    return [epochs - 1] if epochs > 1 else []


def _config(
    plan: ExperimentPlan,
    out_dir: Path,
    model: dict,
    alpha: float,
    epochs: int,
    mutual_info: dict[str, float] | None = None,
    **extra: Any,
) -> TrainConfig:
    raw = {
        "model": model,
        "loss": {"alpha": alpha, **({"mutual_info": mutual_info} if mutual_info else {})},
        "data": {
            "root": str(plan.data),
            "train_annotations": str(plan.data / "annotations" / "train"),
            "val_annotations": str(plan.heldout),
            "num_workers": plan.num_workers,
            "static_clips": extra.pop("static", False),
        },
        "train": {
            "out_dir": str(out_dir),
            "epochs": epochs,
            "batch_size": plan.batch_size,
            "lr": plan.lr,
            "milestones": _milestones(epochs),
            "val_every": 0,  # nothing is picked on the held-out videos
            "seed": plan.seed,
            "device": "cpu",
            "log_every": extra.pop("log_every", 10),
            "max_steps": extra.pop("max_steps", None),
            "progress": False,
        },
    }
    return validate_config(raw, source=str(out_dir))


def pretrain_config(plan: ExperimentPlan) -> TrainConfig:
    return _config(
        plan,
        plan.out / "pretrain",
        {"name": "hrnet-tiny"},
        0.0,
        plan.pretrain_epochs,
        max_steps=plan.pretrain_steps,
        log_every=1 if plan.pretrain_steps else 10,
    )


def arm_config(plan: ExperimentPlan, name: str) -> TrainConfig:
    spec = arm(name)
    return _config(
        plan,
        plan.out / "arms" / name,
        {"name": spec.model, "init": str(plan.start_checkpoint)},
        spec.alpha,
        plan.epochs,
        dict(spec.mutual_info),
        static=spec.static,
        max_steps=plan.max_steps,
        log_every=1 if plan.max_steps else 10,
    )


def make_data(plan: ExperimentPlan) -> None:
    """The training videos and the held-out videos (another seed), unless already written."""
    for split, videos, seed in (
        ("train", plan.train_videos, plan.train_seed),
        (plan.heldout_split, plan.heldout_videos, plan.heldout_seed),
    ):
        folder = plan.data / "annotations" / split
        if folder.is_dir() and len(list(folder.glob("*.json"))) == videos:
            continue
        options = SynthOptions(
            out=plan.data, videos=videos, split=split, frames=plan.frames, width=plan.width,
            height=plan.height, seed=seed,
        )  # fmt: skip
        summary = generate_dataset(options)
        print(f"data: {split}: {videos} videos (seed {seed}) in {summary.seconds:.0f} s")


def _train_once(cfg: TrainConfig) -> dict[str, Any]:
    """Train unless this run already finished; its step count and mean step time."""
    done, last = cfg.train.out_dir / _DONE, cfg.train.out_dir / "last.pt"
    if done.is_file():
        return dict(read_json(done))
    result = train(cfg, resume=last if last.is_file() else None)  # a stopped run continues
    rows = [r for r in read_metrics(cfg.train.out_dir / "metrics.csv") if r.get("phase") == "train"]
    kept = rows[1:] or rows  # the first window holds the warm-up

    def mean(column: str) -> float:
        values = [float(r[column]) for r in kept if r.get(column)]
        return sum(values) / len(values) if values else float("nan")

    summary = {
        "steps": result.step,
        "epochs": result.epoch,
        "step_time_s": mean("step_time_s"),
        "step_cpu_s": mean("step_cpu_s"),
    }
    done.write_text(json.dumps(summary, indent=1))
    return summary


def _evaluate_arm(plan: ExperimentPlan, name: str) -> dict[str, dict]:
    """Predictions of the arm's final weights on every held-out video (official format)."""
    cfg = arm_config(plan, name)
    net, preset = build_network(cfg)
    load_checkpoint(net, preset, cfg.train.out_dir / "last.pt")
    radius = preset.config.radius if isinstance(preset.config, TDMIConfig) else None
    data = PoseTrackClips(
        plan.data, plan.heldout, input_size=preset.input_size, radius=radius,
        layout=preset.layout, static=arm(name).static,
    )  # fmt: skip
    people = predict_people(net, preset, data, batch_size=32, num_workers=plan.num_workers)
    return posetrack_results(people, data.sequences, preset.layout.evaluated)


def evaluate(plan: ExperimentPlan) -> dict[str, Any]:
    """mAP per arm and subset, and the paired bootstrap differences; written as JSON and markdown."""
    gt = {p.stem: read_json(p) for p in sorted(plan.heldout.glob("*.json"))}
    matches, jitter = {}, {}
    for name in plan.arms:
        pred = _evaluate_arm(plan, name)
        matches[name] = {subset: subset_matches(gt, pred, subset) for subset in SUBSETS}
        jitter[name] = evaluate_posetrack_sequences(gt, pred).jitter.to_dict()
    results: dict[str, Any] = {
        "plan": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()},
        "videos": len(gt),
        "map": {name: {s: mean_ap(matches[name][s]) for s in SUBSETS} for name in plan.arms},
        "jitter": jitter,
        "differences": {},
    }
    for a, b in comparisons(plan.arms):
        results["differences"][f"{a} - {b}"] = {
            s: asdict(paired_bootstrap(matches[a][s], matches[b][s], plan.bootstrap, plan.seed))
            for s in SUBSETS
        }
    (plan.out / f"{plan.results_stem}.json").write_text(json.dumps(results, indent=1))
    (plan.out / f"{plan.results_stem}.md").write_text(results_table(results))
    return results


def results_table(results: dict[str, Any]) -> str:
    """The markdown tables of ``results.json``."""
    jitter = results.get("jitter", {})  # results of runs before the jitter column lack it
    lines = [
        "mAP on held-out videos (ground-truth boxes); jitter: mean acceleration error / box height\n",
        _head([*SUBSETS, "jitter"]),
    ]
    for name, row in results["map"].items():
        cells = [_num(row[s]) for s in SUBSETS] + [_jitter(jitter.get(name))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |\n")
    lines += ["\nDifferences, paired bootstrap 95 % interval over videos\n", _head(SUBSETS)]
    for name, row in results["differences"].items():
        cells = [
            f"{_num(row[s]['value'], True)} [{_num(row[s]['low'], True)}, {_num(row[s]['high'], True)}]"
            for s in SUBSETS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |\n")
    return "".join(lines)


def _head(columns: Sequence[str]) -> str:
    return "| | " + " | ".join(columns) + " |\n| --- |" + " --- |" * len(columns) + "\n"


def _jitter(value: dict[str, Any] | None) -> str:
    if value is None or value["mean"] is None:
        return "n/a"
    return f"{value['mean']:.4f}"


def _num(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def collect_timings(plan: ExperimentPlan) -> dict[str, Any]:
    """Steps and mean step times of every finished training run (several processes may train
    arms at once: each run keeps its own record, gathered here)."""
    runs = [plan.out / "pretrain", *sorted((plan.out / "arms").glob("*"))]
    return {d.name: read_json(d / _DONE) for d in runs if (d / _DONE).is_file()}


def run_experiment(plan: ExperimentPlan, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """Run the chosen stages in order; the timings of the finished training runs go to timings.json."""
    plan.out.mkdir(parents=True, exist_ok=True)
    if "data" in stages:
        make_data(plan)
    if "pretrain" in stages and plan.pretrained is None:
        _train_once(pretrain_config(plan))
    if "train" in stages:
        if not plan.start_checkpoint.is_file():
            raise FileNotFoundError(f"{plan.start_checkpoint}: no start checkpoint; run the pretrain stage")
        for name in plan.arms:
            t = _train_once(arm_config(plan, name))
            print(
                f"{name}: {t['steps']} steps, {t['step_time_s']:.3f} s/step, {t['step_cpu_s']:.3f} CPU s/step"
            )
    (plan.out / "timings.json").write_text(json.dumps(collect_timings(plan), indent=1))
    return evaluate(plan) if "evaluate" in stages else {}


def _experiment(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    plan = ExperimentPlan(
        out=Path(args.out),
        train_videos=args.train_videos,
        heldout_videos=args.heldout_videos,
        heldout_seed=args.heldout_seed,
        frames=args.frames,
        pretrain_epochs=args.pretrain_epochs,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        pretrain_steps=args.pretrain_steps,
        pretrained=Path(args.pretrained) if args.pretrained else None,
        num_workers=args.workers,
        bootstrap=args.bootstrap,
        arms=tuple(args.arms),
    )
    stages = STAGES if args.stage == "all" else (args.stage,)
    results = run_experiment(plan, stages)
    if results:
        print(results_table(results))
    return 0


def add_experiment_command(commands: argparse._SubParsersAction) -> None:
    """Register ``experiment`` on the ``tdmi`` parser."""
    cmd = commands.add_parser(
        "experiment",
        help="temporal-gain: single-frame vs TDMI from one pretrained start, equal steps (CPU)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    cmd.add_argument("name", choices=["temporal-gain"])
    cmd.add_argument("--out", required=True, metavar="DIR", help="data, runs and results go here")
    cmd.add_argument("--stage", default="all", choices=["all", *STAGES])
    cmd.add_argument(
        "--arms", nargs="+", default=list(DEFAULT_ARMS), type=_arm_name, metavar="ARM",
        help=f"{', '.join(ARMS)}, or swept: tdmi_alpha<A>, tdmi_alpha<A>_margin<M>",
    )  # fmt: skip
    cmd.add_argument("--train-videos", type=int, default=64)
    cmd.add_argument("--heldout-videos", type=int, default=24)
    cmd.add_argument(
        "--heldout-seed",
        type=int,
        default=12,
        help="held-out videos' seed (a fresh one checks a choice)",
    )
    cmd.add_argument("--frames", type=int, default=40, help="frames per video")
    cmd.add_argument("--pretrain-epochs", type=int, default=4)
    cmd.add_argument("--epochs", type=int, default=3, help="epochs per arm (the lr drops for the last)")
    cmd.add_argument("--batch-size", type=int, default=16)
    cmd.add_argument("--max-steps", type=int, default=None, help="pilot: stop every arm after N steps")
    cmd.add_argument("--pretrain-steps", type=int, default=None, help="pilot: stop pretraining after N steps")
    cmd.add_argument("--pretrained", default=None, help="an hrnet-tiny checkpoint to start from instead")
    cmd.add_argument(
        "--workers", type=int, default=1, help="data loader processes (>= 1 keeps arms' data equal)"
    )
    cmd.add_argument("--threads", type=int, default=1, help="torch threads")
    cmd.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    cmd.set_defaults(run=_experiment)
