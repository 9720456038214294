"""The small interface every task implements; the fit loop and the search layer know tasks only
through it (a new task needs no edit in `search/`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from training.config import TrainConfig
from training.data.samples import ImageSet
from training.loop.optim import create_optimizer
from training.loop.runtime import Runtime
from training.loop.step import training_step
from training.metrics.bootstrap import RESAMPLES
from training.models.backbone import all_trainable
from training.schema.errors import ConfigError
from training.schema.metric_names import ExportedSetting, exported_settings, metric_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.console import RenderableType


@dataclass
class ReportTable:
    """A table about a trained model (e.g. its validation confusion matrix), with an optional figure
    of it: the search report writes `<name>.csv` and `<name>.png` for its best trial."""

    name: str  # file stem
    description: str  # what it is, for the report's index
    header: list[str]
    rows: list[list[Any]]
    figure: Figure | None = None
    summary: str = ""  # one console line


class ModelOutputs(ABC):
    """A trained model's outputs on a fixed list of images, scored on any resample of them (the
    bootstrap of `training.metrics.bootstrap` calls `metrics` once per resample)."""

    headline: ClassVar[str]  # the metric a verdict leads with (what a search of this task usually maximizes)
    resamples: ClassVar[int] = RESAMPLES  # the bootstrap's default: what the cost of `metrics` affords

    @abstractmethod
    def __len__(self) -> int:
        """The number of images."""

    @abstractmethod
    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """The model's metrics on the images at `indices` (repeats allowed; None = all of them), keyed
        like the task's validation metrics without `val/` (no loss: that needs the training data)."""


def load_weights(model: nn.Module, state: dict[str, Any]) -> None:
    """`model.load_state_dict(state)`, a mismatch told as a ConfigError on `model`."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).splitlines()  # torch's first line only names the module class
        detail = (lines[1] if len(lines) > 1 else str(exc)).strip()[:200]
        raise ConfigError("model", f"the saved weights do not fit this config's model ({detail})") from None


class Task(ABC):
    """Owns the data, the model and the loss of one run; `fit` drives it epoch by epoch."""

    name: ClassVar[str]
    # data.cache device draws batches on the device, without a DataLoader: False for a task whose
    # batches need one (the search then keeps `auto` off the device)
    device_batches_ok: ClassVar[bool] = True
    model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        self.cfg = cfg
        self.runtime = runtime

    @classmethod
    def metric_names(cls, cfg: TrainConfig) -> list[str]:
        """Every metric key this task reports per epoch (`train/...`, `val/...`), as declared in
        `training.schema.metric_names`, where a search reads them before torch loads."""
        return metric_names(cls.name, cfg)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        """Raise a ConfigError for a config this task cannot run; cheap, runs before any trial."""

    @classmethod
    def describe_data(cls, cfg: TrainConfig, searched: Collection[str]) -> list[RenderableType]:
        """What `search check` prints about this task's data after its timings (e.g. the box statistics
        behind anchor choices); `searched` are the space's keys. Nothing by default."""
        return []

    @classmethod
    def exported_settings(cls, metrics: dict[str, float]) -> list[ExportedSetting]:
        """Config values that a trial's (last) metrics decide, set in its exported config, as declared
        in `training.schema.metric_names` (e.g. the calibrated threshold of classification)."""
        return exported_settings(cls.name, metrics)

    @classmethod
    def report_tables(cls, cfg: TrainConfig, runtime: Runtime, checkpoint: Path, label: str) -> list[ReportTable]:
        """Tables about the model of `cfg` saved in `checkpoint` (a `training.loop.fit` state file), for the
        search report; `label` names the model in titles. None by default: a class method, so that a
        task without tables costs no data load."""
        return []

    @classmethod
    def outputs(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any], images: ImageSet) -> ModelOutputs:
        """The outputs on `images` (labels indexing `training.data.class_names(cfg.data)`) of the model
        of `cfg` with the weights `model_state` (a saved `task.model.state_dict()`), computed as
        `evaluate` computes them on the validation split, without loading the training data. A task
        that cannot says so with a ConfigError."""
        raise ConfigError("task", f"task '{cls.name}' cannot score a saved model on images")

    @classmethod
    def loaded(cls, cfg: TrainConfig, runtime: Runtime, model_state: dict[str, Any]) -> Task:
        """An instance holding the model of `cfg` with the weights `model_state`, in eval mode, without
        data: what `outputs`, `predict` and `infer` run on. A task that cannot predict says so with a
        ConfigError."""
        raise ConfigError("task", f"task '{cls.name}' cannot predict on images")

    @property
    def eval_model(self) -> nn.Module:
        """The network the validation metrics describe, and `infer` runs."""
        return self.model

    def infer(self, images: torch.Tensor) -> Any:
        """The model's predictions on an NCHW RGB batch of 0-255 values at the data's image size, as
        validation computes them; traceable, so that `training.inference.deploy` exports exactly this."""
        raise NotImplementedError(f"task '{self.name}' has no inference on images")

    def predict(self, images: list[np.ndarray]) -> Any:
        """One prediction per uint8 RGB HxWx3 image of any size (indexable by image): each resized as
        validation resizes, then `infer`, on the CPU."""
        raise NotImplementedError(f"task '{self.name}' has no inference on images")

    @classmethod
    def _bare(cls, cfg: TrainConfig, runtime: Runtime) -> Task:
        """An instance without data or model, for `outputs` to give a model and predict with: `__init__`
        would load and decode the training split. Its model starts from no weights file (pretrained,
        init_from): saved weights replace them."""
        task = cls.__new__(cls)
        model = cfg.model.model_copy(update={"pretrained": False, "init_from": None})
        Task.__init__(task, cfg.model_copy(update={"model": model}), runtime)
        return task

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

    def train_step(self) -> Callable[[Any], None]:
        """A function running one training step on a batch as `fit` does (forward, backward, optimizer
        step, `after_step`), with an optimizer of its own: what `search check` times."""
        with all_trainable(self.model):  # as fit builds it: a later phase may unfreeze stages
            optimizer = create_optimizer(self.model, self.cfg.optim)
        scaler = self.runtime.grad_scaler()

        def step(batch: Any) -> None:
            self.model.train()
            training_step(self, batch, optimizer, scaler, self.cfg.train.grad_clip)

        return step

    @torch.no_grad()
    def eval_batch(self, batch: Any) -> None:
        """The work `evaluate` does for one validation batch, in eval mode: what `search check` times.
        By default the loss of the batch (forward + loss)."""
        self.model.eval()
        with self.runtime.autocast():
            self.training_loss(batch).item()

    def chance_metrics(self) -> dict[str, float]:
        """The validation metrics (`val/...`) of a constant prediction that knows only the training
        split's class frequencies: the chance level a model starts from. A search does not stop
        trials at an epoch where its reference config still scores this (search/rungs.py). None by
        default (no such rule for the task)."""
        return {}

    def epoch_extras(self) -> dict[str, Any]:
        """JSON-able per-epoch data that is not a scalar metric (e.g. a score histogram); logged as
        an artifact by whoever tracks the run. Called once per epoch, after `evaluate`."""
        return {}

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics keyed `val/...`."""
