"""The training loop: one code path for a laptop CPU, one GPU, and many GPUs under torchrun.

Adam with step decays of the learning rate (per epoch), TDMI's objective (heatmap MSE + alpha *
L_MI) or plain heatmap MSE for single-frame presets, optional mixed precision and channels-last
on CUDA, gradient clipping, and periodic validation with the PoseTrack metric: every process
predicts its share of the validation crops, rank 0 writes the official-format files, runs the
evaluator and logs mean AP. ``last.pt`` (every epoch, and when a time or step budget stops the
run) holds everything a resume needs; ``best.pt`` the weights of the best validation mAP. Both
are ordinary checkpoints of ``tdmi.model.checkpoint``, so ``build_model(name, path)`` loads them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from tdmi.model.checkpoint import read_checkpoint, save_checkpoint
from tdmi.model.data.datasets import PoseTrackClips
from tdmi.model.evaluation.posetrack import evaluate_posetrack
from tdmi.model.evaluation.predict import posetrack_results, predict_people, write_results
from tdmi.model.losses import TDMILoss, heatmap_mse
from tdmi.model.presets import ModelPreset, get_preset, load_checkpoint
from tdmi.model.tdmi import TDMIConfig
from tdmi.model.training.config import TrainConfig
from tdmi.model.training.distributed import (
    DistributedContext,
    all_gather_objects,
    any_rank,
    barrier,
    init_distributed,
    mean_across,
)
from tdmi.model.training.metrics_log import MetricsLog

__all__ = ["Objective", "TrainResult", "Trainer", "build_network", "train"]

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves: the trained network and where it stands."""

    net: nn.Module
    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    best_map: float | None
    out_dir: Path
    is_main: bool = True  # rank 0 (under torchrun, the process that logs and saves)


def build_network(cfg: TrainConfig) -> tuple[nn.Module, ModelPreset]:
    """The preset's network, with a frozen backbone if asked, initialised from ``model.init``."""
    preset = get_preset(cfg.model.name)
    if cfg.model.freeze_backbone or cfg.model.tdmi is not None:
        if not isinstance(preset.config, TDMIConfig):
            key = "model.freeze_backbone" if cfg.model.freeze_backbone else "model.tdmi"
            raise ValueError(f"{key} needs a TDMI preset; {preset.name} is single-frame")
        config = preset.config if cfg.model.tdmi is None else cfg.model.tdmi.apply(preset.config)
        preset = replace(preset, config=replace(config, freeze_backbone=cfg.model.freeze_backbone))
    net = preset.build()
    if cfg.model.init is not None:
        load_checkpoint(net, preset, cfg.model.init)
    return net, preset


class Objective(nn.Module):
    """Network and loss as one module, so DDP sees (and synchronises) the whole forward pass."""

    def __init__(self, net: nn.Module, preset: ModelPreset, cfg: TrainConfig):
        super().__init__()
        self.net = net
        self.criterion = (
            TDMILoss(cfg.loss.alpha, cfg.loss.mutual_info, net.get_submodule("head"))
            if preset.multi_frame
            else None
        )

    def readouts(self) -> nn.Module | None:
        """L_MI's fitted readouts: trained beside the network, kept in training checkpoints only."""
        mutual_info = None if self.criterion is None else self.criterion.mutual_info
        return None if mutual_info is None else mutual_info.readouts

    def forward(
        self, inputs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.criterion is not None:
            return self.criterion(self.net, inputs, target, weight)
        heatmap = heatmap_mse(self.net(inputs).float(), target, weight)
        return {"heatmap": heatmap, "loss": heatmap}


class EpochSampler(Sampler[int]):
    """DistributedSampler's seeded per-epoch shuffle (also in a world of one), able to start
    part-way through an epoch, so a resumed run sees the rest of the interrupted epoch."""

    def __init__(self, dataset: Dataset, ctx: DistributedContext, seed: int):
        self.inner: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
        )
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip :])

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class Trainer:
    """Holds the state of one run; ``fit`` trains until the epochs, steps or minutes run out."""

    def __init__(self, cfg: TrainConfig, ctx: DistributedContext, resume: str | Path | None = None):
        self.cfg, self.ctx = cfg, ctx
        train_cfg = cfg.train
        self.out_dir = train_cfg.out_dir
        self.device = ctx.device
        on_cuda = self.device.type == "cuda"
        self.amp_dtype = _AMP.get(train_cfg.precision) if on_cuda else None
        self.channels_last = train_cfg.channels_last and on_cuda
        if on_cuda:
            torch.backends.cudnn.benchmark = True
        _seed_everything(train_cfg.seed + ctx.rank)

        self.net, self.preset = build_network(cfg)
        self.net.to(self.device)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        plain = Objective(self.net, self.preset, cfg)
        self.readouts = plain.readouts()
        objective: nn.Module = plain
        if ctx.distributed:
            # the noisy gate goes unused when alpha = 0 or an L_MI term is switched off
            mi = cfg.loss.mutual_info
            weights = (mi.useful_noisy, mi.motion_useful, mi.useful_label, mi.feature_label)
            unused = self.preset.multi_frame and (cfg.loss.alpha == 0 or min(weights) == 0)
            objective = DistributedDataParallel(
                objective,
                device_ids=[self.device.index] if on_cuda else None,
                find_unused_parameters=unused,
            )
        self.objective = objective
        params = [p for p in self.net.parameters() if p.requires_grad]
        if self.readouts is not None:
            params += list(self.readouts.parameters())
        self.optimizer = torch.optim.Adam(params, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(train_cfg.milestones), gamma=train_cfg.gamma
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.train_set = _posetrack(cfg, self.preset, train=True)
        self.val_set = _posetrack(cfg, self.preset, train=False) if train_cfg.val_every > 0 else None
        self.sampler = EpochSampler(self.train_set, ctx, train_cfg.seed)
        workers = cfg.data.num_workers
        self.loader = DataLoader(
            self.train_set,
            batch_size=train_cfg.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=on_cuda,
            drop_last=True,
            # workers' seeds (and so the augmentations) come from the run's seed alone, not from
            # whatever the model's initialisation drew: runs of different models see the same data
            generator=torch.Generator().manual_seed(train_cfg.seed + ctx.rank),
        )
        if len(self.sampler) < train_cfg.batch_size:
            raise ValueError(
                f"training set has {len(self.train_set)} samples: less than one batch of"
                f" {train_cfg.batch_size} per process (world size {ctx.world_size})"
            )
        self.epoch = 0  # epoch in progress
        self.epoch_batches = 0  # batches of it already done
        self.step = 0
        self.best_map: float | None = None
        self.log = MetricsLog(self.out_dir / "metrics.csv") if ctx.is_main else None
        if resume is not None:
            self._restore(resume)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            tqdm.write(self._summary())

    def _summary(self) -> str:
        cfg = self.cfg.train
        precision: str = cfg.precision if self.amp_dtype is not None else "fp32"
        if precision != cfg.precision:
            precision += f" ({cfg.precision} is for CUDA)"
        val = 0 if self.val_set is None else len(self.val_set)
        start = f"; resuming at step {self.step}" if self.step else ""
        return (
            f"{self.preset.name}: {len(self.train_set)} training and {val} validation clips;"
            f" {self.ctx.world_size} process(es) on {self.device}, {precision},"
            f" batch {cfg.batch_size} per process{start}"
        )

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        cfg = self.cfg.train
        started = time.monotonic()
        stopped = False
        self.net.train()  # a frozen backbone's train() keeps it (and its BatchNorm) in eval mode
        while self.epoch < cfg.epochs and not stopped:
            self.sampler.set_epoch(self.epoch, skip=self.epoch_batches * cfg.batch_size)
            bar = tqdm(
                total=len(self.loader) + self.epoch_batches,
                initial=self.epoch_batches,
                desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                disable=not (self.ctx.is_main and cfg.progress),
                leave=False,
            )
            window = _Window()
            tick = time.perf_counter()
            for batch in self.loader:
                window.data_time += time.perf_counter() - tick
                terms = self._train_step(batch)
                self.step += 1
                self.epoch_batches += 1
                window.add(terms)
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    self._log_train(window, time.perf_counter() - window.started)
                    bar.set_postfix(loss=f"{window.last_loss:.4g}")
                    window = _Window()
                stopped = self._budget_spent(started)
                if stopped:
                    break
                tick = time.perf_counter()
            bar.close()
            if window.steps:
                self._log_train(window, time.perf_counter() - window.started)
            if not stopped:
                self.scheduler.step()
                self.epoch += 1
                self.epoch_batches = 0
            validate = cfg.val_every > 0 and (
                stopped or self.epoch % cfg.val_every == 0 or self.epoch == cfg.epochs
            )
            if validate:
                self._validate()
            self._save("last.pt")
        return TrainResult(self.net, self.epoch, self.step, self.best_map, self.out_dir, self.ctx.is_main)

    def _train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        inputs = batch["inputs"].to(self.device, non_blocking=True)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        target = batch["target"].to(self.device, non_blocking=True)
        weight = batch["target_weight"].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            terms = self.objective(inputs, target, weight)
        loss = terms["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {k: v.detach().float() for k, v in terms.items()}

    def _budget_spent(self, started: float) -> bool:
        cfg = self.cfg.train
        spent = (cfg.max_steps is not None and self.step >= cfg.max_steps) or (
            cfg.max_minutes is not None and time.monotonic() - started >= 60 * cfg.max_minutes
        )
        return any_rank(self.ctx, spent)

    # -- logging, validation, checkpoints -------------------------------------------------------

    def _log_train(self, window: _Window, seconds: float) -> None:
        names = sorted(window.sums)
        means = mean_across(self.ctx, torch.stack([window.sums[n] for n in names]) / window.steps)
        if not bool(torch.isfinite(means).all()) and not self.scaler.is_enabled():
            # the same mean on every process, so all of them stop here together
            raise FloatingPointError(f"loss is not finite by step {self.step}; lower train.lr")
        if self.log is None:
            return
        step_time = seconds / window.steps
        row: dict[str, Any] = {
            "phase": "train",
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        row.update({name: float(v) for name, v in zip(names, means.tolist())})
        row.update(
            step_time_s=step_time,
            # CPU seconds of this process per step: on a shared machine, what a step needs of
            # one core (data loader processes not included); wall time also counts the waiting
            step_cpu_s=(time.process_time() - window.cpu_started) / window.steps,
            data_time_s=window.data_time / window.steps,
            clips_per_s=self.cfg.train.batch_size * self.ctx.world_size / step_time,
        )
        self.log.write(row)

    def _validate(self) -> None:
        """Each process predicts every world_size-th crop; rank 0 evaluates all of them."""
        assert self.val_set is not None
        cfg = self.cfg.train
        barrier(self.ctx)
        started = time.perf_counter()
        mine = range(self.ctx.rank, len(self.val_set), self.ctx.world_size)
        people = predict_people(
            self.net,
            self.preset,
            self.val_set,
            batch_size=cfg.val_batch_size,
            device=self.device,
            flip=cfg.val_flip,
            amp_dtype=self.amp_dtype,
            indices=mine,
            num_workers=self.cfg.data.num_workers,
            progress=self.ctx.is_main and cfg.progress,
        )
        gathered = all_gather_objects(self.ctx, people)
        improved = False
        if self.ctx.is_main:
            everyone = [p for part in gathered for p in part]
            results = posetrack_results(everyone, self.val_set.sequences, self.preset.layout.evaluated)
            pred_dir = self.out_dir / "val_predictions"
            write_results(results, pred_dir)
            ap = evaluate_posetrack(self.cfg.data.val_dir, pred_dir).ap
            mean_ap = ap.total
            row: dict[str, Any] = {"phase": "val", "epoch": self.epoch, "step": self.step, "val_map": mean_ap}
            row.update({f"val_ap_{name.lower()}": v for name, v in ap.columns().items() if name != "Total"})
            row["val_time_s"] = time.perf_counter() - started
            assert self.log is not None
            self.log.write(row)
            tqdm.write(f"epoch {self.epoch} step {self.step}: val mAP {mean_ap:.2f}")
            improved = self.best_map is None or mean_ap > self.best_map
            if improved:
                self.best_map = mean_ap
        self.best_map, improved = all_gather_objects(self.ctx, (self.best_map, improved))[0]
        if improved:
            self._save("best.pt")  # every process: saving gathers their random states
        barrier(self.ctx)

    def _save(self, name: str) -> None:
        rng = all_gather_objects(self.ctx, _rng_state())
        if not self.ctx.is_main:
            return
        save_checkpoint(
            self.net,
            self.out_dir / name,
            self.preset.name,
            epoch=self.epoch,
            epoch_batches=self.epoch_batches,
            step=self.step,
            best_map=self.best_map,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
            config=self.cfg.to_dict(),
            readouts=None if self.readouts is None else self.readouts.state_dict(),
        )

    def _restore(self, path: str | Path) -> None:
        ckpt = read_checkpoint(path)
        if ckpt.preset != self.preset.name or "optimizer" not in ckpt.meta:
            raise ValueError(
                f"{path}: not a training checkpoint of {self.preset.name} (use model.init for weights)"
            )
        load_checkpoint(self.net, self.preset, path)
        meta = ckpt.meta
        self.optimizer.load_state_dict(meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        self.scaler.load_state_dict(meta["scaler"])
        if self.readouts is not None and meta.get("readouts") is not None:
            self.readouts.load_state_dict(meta["readouts"])
        self.epoch, self.epoch_batches, self.step = meta["epoch"], meta["epoch_batches"], meta["step"]
        self.best_map = meta["best_map"]
        states = meta["rng"]
        if len(states) == self.ctx.world_size:
            _set_rng_state(states[self.ctx.rank])
        else:  # a different world size: fresh but reproducible streams
            _seed_everything(self.cfg.train.seed + self.ctx.rank + self.step)
        if self.epoch_batches >= len(self.sampler) // self.cfg.train.batch_size:
            # the interrupted epoch had no full batch left (or the world size changed)
            self.scheduler.step()
            self.epoch, self.epoch_batches = self.epoch + 1, 0


class _Window:
    """Sums of loss terms over the steps between two log rows (kept on the device)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.data_time = 0.0
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()  # this process's CPU seconds (all its threads)
        self._last: torch.Tensor | None = None

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.steps += 1
        self._last = terms["loss"]

    @property
    def last_loss(self) -> float:
        return math.nan if self._last is None else float(self._last)


def _posetrack(cfg: TrainConfig, preset: ModelPreset, train: bool) -> PoseTrackClips:
    data = cfg.data
    return PoseTrackClips(
        data.root,
        data.train_dir if train else data.val_dir,
        input_size=preset.input_size,
        radius=preset.config.radius if isinstance(preset.config, TDMIConfig) else None,
        layout=preset.layout,
        train=train,
        augment=data.augment if train else None,
        boxes="gt" if train or data.val_boxes == "gt" else Path(data.val_boxes),
        score_threshold=data.val_score_threshold,
        sigma=data.sigma,
        static=data.static_clips,
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every random stream of this process as plain bytes and ints: they travel between
    processes as pickles and load back with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, np.asarray(keys, dtype=np.uint32).tobytes(), pos, has_gauss, gauss],
        "torch": _to_bytes(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_to_bytes(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.frombuffer(keys, dtype=np.uint32).copy(), pos, has_gauss, gauss))
    torch.set_rng_state(_from_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_from_bytes(s) for s in state["cuda"]])


def _to_bytes(state: torch.Tensor) -> bytes:
    return state.cpu().numpy().tobytes()


def _from_bytes(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def train(cfg: TrainConfig, resume: str | Path | None = None) -> TrainResult:
    """Run (or resume) training as described by ``cfg``; under torchrun, as one of its processes."""
    ctx = init_distributed(cfg.train.device)
    try:
        return Trainer(cfg, ctx, resume).fit()
    finally:
        ctx.close()
