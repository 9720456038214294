"""The epoch loop: train one epoch, step the schedule, evaluate, hand the epoch to a callback."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from training.config import TrainConfig
from training.loop.optim import create_optimizer, create_scheduler
from training.loop.phases import check_phases, phase_at
from training.loop.runtime import Runtime, compile_model, epoch_seed_of
from training.loop.step import training_step
from training.models.backbone import all_trainable
from training.tasks import Task, create_task


CHECKPOINT_FILE = "state.pt"  # inside a checkpoint folder: what `EpochReport.state()` returns, saved
# training steps between checks of the losses for NaN/inf (each check waits for the device once)
CHECK_EVERY = 4


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss became NaN or infinite."""


@dataclass
class EpochReport:
    """What a callback gets after each epoch; `state()` builds a checkpoint only when asked."""

    epoch: int
    metrics: dict[str, float]
    state: Callable[[], dict[str, Any]]
    extras: dict[str, Any] = field(default_factory=dict)  # Task.epoch_extras(): JSON-able, logged as artifacts
    chance: dict[str, float] = field(default_factory=dict)  # Task.chance_metrics(): a constant prediction's


EpochCallback = Callable[[EpochReport], None]


def seed_everything(seed: int) -> None:
    """Seed python's, NumPy's and torch's global generators: whatever a model, a loss or a library
    draws from them is then a function of the seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fold_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """The config of each model a run trains: one, or one per fold with `data.fold` set (k-fold)."""
    if cfg.data.folds == 1:
        return [cfg]
    return [cfg.model_copy(update={"data": cfg.data.model_copy(update={"fold": i})}) for i in range(cfg.data.folds)]


@dataclass
class ModelRun:
    """One model's training: its task (data, model, loss) with its optimizer, schedule and loss scaler."""

    cfg: TrainConfig
    task: Task
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def start(cls, cfg: TrainConfig, runtime: Runtime) -> ModelRun:
        seed_everything(cfg.seed)
        task = create_task(cfg, runtime)
        if cfg.train.compile:
            compile_model(task.model, runtime.device)
        # a later phase may unfreeze stages: the optimizer holds every parameter (a frozen one has no
        # gradient, so the optimizer skips it, weight decay included)
        with all_trainable(task.model):
            optimizer = create_optimizer(task.model, cfg.optim)
        scheduler = create_scheduler(optimizer, cfg.optim, cfg.train.epochs, len(task.train_loader))
        return cls(cfg, task, optimizer, scheduler, runtime.grad_scaler())

    def load(self, state: dict[str, Any]) -> None:
        self.task.model.load_state_dict(state["model"])
        if "optimizer" in state:  # absent from a finished run's state: nothing is left to train
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])

    def state(self, final: bool) -> dict[str, Any]:
        if final:
            # a finished run resumes nothing: the optimizer's moments (twice the model for AdamW) would only be copied
            return {"model": self.task.model.state_dict()}
        return {
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),  # fp16's loss scale: empty when loss scaling is off
        }

    def epoch(self, epoch: int) -> dict[str, float]:
        """Train one epoch and evaluate: the epoch's metrics. Every epoch starts from generators
        seeded by (seed, epoch): a run resumed at epoch k draws what an uninterrupted one draws there."""
        seed_everything(epoch_seed_of(self.cfg.seed, epoch))
        self.task.start_epoch(epoch)
        lr_factor = phase_at(self.cfg, epoch).lr_factor
        train = self.cfg.train
        loss = train_one_epoch(self.task, self.optimizer, self.scheduler, self.scaler, train.grad_clip, epoch, lr_factor)
        return {"train/loss": loss, **self.task.evaluate(), "train/lr": self.optimizer.param_groups[0]["lr"]}


def mean_metrics(per_model: list[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the models whose value is finite (NaN where none is): a fold
    without a defect image has no miss rate, and the other folds' still say something."""
    if len(per_model) == 1:
        return per_model[0]
    means = {}
    for key in dict.fromkeys(k for metrics in per_model for k in metrics):
        finite = [m[key] for m in per_model if key in m and math.isfinite(m[key])]
        means[key] = sum(finite) / len(finite) if finite else math.nan
    return means


def fit(
    cfg: TrainConfig,
    runtime: Runtime | None = None,
    on_epoch: EpochCallback | None = None,
    resume_state: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train `cfg` for `cfg.train.epochs` epochs; returns the last epoch's metrics. With
    `data.folds` = k > 1 it trains k models in lockstep, fold i validating model i, and every epoch's
    metrics are their means over the folds."""
    runtime = runtime or Runtime.from_config(cfg.train)
    check_phases(cfg)
    runtime.apply()
    runs = [ModelRun.start(fold_cfg, runtime) for fold_cfg in fold_configs(cfg)]
    chance = mean_metrics([run.task.chance_metrics() for run in runs])
    start = 1
    if resume_state:
        for run, state in zip(runs, resume_state.get("folds") or [resume_state]):
            run.load(state)
        start = resume_state["epoch"] + 1

    def state(epoch: int) -> dict[str, Any]:
        models = [run.state(final=epoch == cfg.train.epochs) for run in runs]
        # fold 0 also at the top, where a single model's state is: the same tensors, saved once
        folds = {"folds": models} if len(models) > 1 else {}
        return {"epoch": epoch, **models[0], **folds, "config": cfg.model_dump(mode="json")}

    metrics: dict[str, float] = {}
    for epoch in range(start, cfg.train.epochs + 1):
        began = time.perf_counter()
        metrics = mean_metrics([run.epoch(epoch) for run in runs])
        metrics["time/epoch_s"] = time.perf_counter() - began
        if on_epoch:
            extras = runs[0].task.epoch_extras()  # diagnostics (histograms): the first fold's stand for all
            on_epoch(EpochReport(epoch, metrics, lambda e=epoch: state(e), extras, chance))
    return metrics


class LossWatch:
    """An epoch's training losses, summed on the device and checked for NaN/inf once every `every`
    steps, one window behind: the host reads a window's verdict while the device runs the next one,
    so it never waits on the step it has just queued. A non-finite loss is reported at most
    2 * `every` - 1 steps late, and at the latest at the end of the epoch, naming its batch."""

    def __init__(self, epoch: int, device: torch.device, every: int = CHECK_EVERY):
        self.epoch, self.every = epoch, every
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.steps = 0
        self.window: list[torch.Tensor] = []
        self.queued: tuple[int, torch.Tensor, torch.Tensor] | None = None  # first batch, losses, all finite

    def add(self, loss: torch.Tensor) -> None:
        self.window.append(loss)
        self.steps += 1
        if len(self.window) == self.every:
            self._close_window()

    def _close_window(self) -> None:
        losses = torch.stack(self.window).double()
        self.total += losses.sum()
        previous, self.window = self.queued, []
        self.queued = (self.steps - len(losses) + 1, losses, torch.isfinite(losses).all())
        self._check(previous)

    def _check(self, window: tuple[int, torch.Tensor, torch.Tensor] | None) -> None:
        if window is None or bool(window[2]):
            return
        first, losses, _ = window
        offset = int((~torch.isfinite(losses)).nonzero()[0])
        raise NonFiniteLossError(f"loss is {losses[offset].item()} at epoch {self.epoch}, batch {first + offset}")

    def mean(self) -> float:
        """The epoch's mean loss, after checking every loss not yet checked."""
        if self.window:
            self._close_window()
        self._check(self.queued)
        self.queued = None
        return float(self.total) / max(self.steps, 1)


def scale_lr(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, factor: float) -> None:
    """Set each group's LR to `factor` times the scheduled one. Our schedules compute the LR from the
    step count, never from the optimizer's current LR, so the factor does not compound."""
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
        group["lr"] = lr * factor


def train_one_epoch(
    task: Task,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
    epoch: int,
    lr_factor: float = 1.0,
) -> float:
    """One pass over the training data, at `lr_factor` times the scheduled LR; the mean loss.
    Raises NonFiniteLossError on divergence, naming the first batch whose loss was NaN or infinite."""
    task.model.train()
    watch = LossWatch(epoch, task.runtime.device)
    scale_lr(optimizer, scheduler, lr_factor)
    for batch in task.train_loader:
        watch.add(training_step(task, batch, optimizer, scaler, grad_clip))
        scheduler.step()
        scale_lr(optimizer, scheduler, lr_factor)
    return watch.mean()
