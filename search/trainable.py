"""The only bridge from Tune to `training`: trial values -> config -> `fit`, epochs -> Tune reports."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from ray import tune

from search.roles import runs_full_budget, seed_of
from search.space import Distribution, apply_values, decode_trial
from training.config import TrainConfig
from training.loop.fit import CHECKPOINT_FILE, EpochReport, fit
from training.loop.runtime import Runtime
from training.schema.resources import TrialResources


def trial_config(base: TrainConfig, space: dict[str, Distribution], params: dict[str, Any]) -> TrainConfig:
    """The full training config of one trial: a replica (search/roles.py) trains with its own seed."""
    cfg = apply_values(base, decode_trial(space, params))
    seed = seed_of(params)
    return cfg if seed is None else cfg.model_copy(update={"seed": seed})


class CheckpointClock:
    """Which epochs of a trial save a checkpoint: one once `every_s` seconds passed since the last (or
    since the trial began), and the last epoch of a trial that ran at least that long.

    A checkpoint is the model plus the optimizer state (tens of MB), and with `num_to_keep` Tune
    snapshots the whole experiment (every trial, the pickled searcher) whenever a trial's new
    checkpoint may replace the one the last snapshot points to: per-epoch checkpoints of short epochs
    would cost more than the epochs and grow with the trial count. A hard kill loses at most
    `every_s` of a running trial's work; a trial shorter than that has nothing worth saving, unless
    `keep_last`: the models that the end-of-search verdict scores on the test split are kept.
    """

    def __init__(self, every_s: float, last_epoch: int, keep_last: bool = False):
        self.every_s, self.last_epoch, self.keep_last = every_s, last_epoch, keep_last
        self.began = self.saved = time.monotonic()

    def due(self, epoch: int) -> bool:
        now = time.monotonic()
        long_enough = self.keep_last or now - self.began >= self.every_s
        if now - self.saved >= self.every_s or (epoch >= self.last_epoch and long_enough):
            self.saved = now
            return True
        return False


def _report(report: EpochReport, save: bool) -> None:
    extras = {"extras": report.extras} if report.extras else {}
    # `chance` is no metric (no "/" at the top): the scheduler reads it, MLflow and the journal do not
    metrics = {"epoch": report.epoch, **report.metrics, **extras, **({"chance": report.chance} if report.chance else {})}
    if not save:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        torch.save(report.state(), Path(folder) / CHECKPOINT_FILE)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _resume_state() -> dict[str, Any] | None:
    """The trial's last checkpoint when Tune restarts it (retry or resume), else None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def keeps_model(params: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether the trial saves its last epoch whatever its length: the runs of a config the verdict may
    score on the test split (replicas, the reference baseline) and, with a test split, every trial
    that runs its full budget (without confirmation the best of them is the winner)."""
    from training.data import has_test

    return runs_full_budget(params) or has_test(cfg.data)


def make_trainable(
    base: TrainConfig, space: dict[str, Distribution], resources: TrialResources, checkpoint_every_s: float
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable; the resources Ray reserves for the trial become its torch runtime."""

    def trial(params: dict[str, Any]) -> None:
        cfg = trial_config(base, space, params)
        clock = CheckpointClock(checkpoint_every_s, cfg.train.epochs, keep_last=keeps_model(params, cfg))
        fit(
            cfg,
            Runtime.for_trial(cfg, resources),
            on_epoch=lambda report: _report(report, clock.due(report.epoch)),
            resume_state=_resume_state(),
        )

    return trial
