"""The only bridge from Tune to `training`: trial values -> config -> `fit`, epochs -> Tune reports."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from ray import tune

from search.space import Distribution, apply_values, decode_trial
from training.config import TrainConfig
from training.fit import CHECKPOINT_FILE, EpochReport, fit
from training.runtime import Runtime


def trial_config(base: TrainConfig, space: dict[str, Distribution], params: dict[str, Any]) -> TrainConfig:
    """The full training config of one trial."""
    return apply_values(base, decode_trial(space, params))


def _report(report: EpochReport) -> None:
    with tempfile.TemporaryDirectory() as folder:
        torch.save(report.state(), Path(folder) / CHECKPOINT_FILE)
        checkpoint = tune.Checkpoint.from_directory(folder)
        extras = {"extras": report.extras} if report.extras else {}
        tune.report({"epoch": report.epoch, **report.metrics, **extras}, checkpoint=checkpoint)


def _resume_state() -> dict[str, Any] | None:
    """The trial's last checkpoint when Tune restarts it (retry or resume), else None."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)


def make_trainable(
    base: TrainConfig, space: dict[str, Distribution], cpu: float, gpu: float
) -> Callable[[dict[str, Any]], None]:
    """A Tune function trainable; the trial's Ray resources become its torch runtime."""

    def trial(params: dict[str, Any]) -> None:
        cfg = trial_config(base, space, params)
        fit(cfg, Runtime.for_trial(cfg, cpu, gpu), on_epoch=_report, resume_state=_resume_state())

    return trial
