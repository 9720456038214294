"""The small interface every task implements; the fit loop knows tasks only through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from training.config import TrainConfig
from training.runtime import Runtime


class Task(ABC):
    """Owns the data, the model and the loss of one run; `fit` drives it epoch by epoch."""

    name: ClassVar[str]
    model: nn.Module
    train_loader: DataLoader

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        self.cfg = cfg
        self.runtime = runtime

    @classmethod
    @abstractmethod
    def metric_names(cls, cfg: TrainConfig) -> list[str]:
        """Every metric key this task reports per epoch (`train/...`, `val/...`)."""

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        """Raise a ConfigError for a config this task cannot run; cheap, runs before any trial."""

    def start_epoch(self, epoch: int) -> None:
        """Re-seed per-epoch randomness (shuffling, augmentation, mixing) from (seed, epoch), so a run
        resumed at epoch k sees the same batches as an uninterrupted one. `fit` has just seeded
        python's, NumPy's and torch's global generators with `epoch_seed_of(seed, epoch)`; a sample's
        augmentation draws from a seed of its own (seed, epoch, position), so neither the number of
        DataLoader workers nor which one makes it changes what it draws."""

    @abstractmethod
    def training_loss(self, batch: Any) -> torch.Tensor:
        """The scalar loss of one training batch (inside the runtime's autocast)."""

    def after_step(self) -> None:
        """Called after every optimizer step (e.g. to move an EMA teacher toward the student)."""

    def epoch_extras(self) -> dict[str, Any]:
        """JSON-able per-epoch data that is not a scalar metric (e.g. a score histogram); logged as
        an artifact by whoever tracks the run. Called once per epoch, after `evaluate`."""
        return {}

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics keyed `val/...`."""
