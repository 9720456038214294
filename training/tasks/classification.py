"""Image classification (binary or multi-class) with a timm backbone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Sampler
from torchmetrics.functional.classification import multiclass_confusion_matrix

from training.augment.mix import mix_batch, mix_enabled
from training.augment.tta import tta_logits
from training.config import EvalConfig, TrainConfig
from training.data import class_names, is_multilabel
from training.data.dataset import ClassificationDataset
from training.data.imbalance import balanced_sampler, class_weights
from training.loop.runtime import Runtime, epoch_seed_of
from training.losses.classification import create_loss, defect_alpha
from training.metrics.calibration import calibration_metrics
from training.metrics.classification import classification_metrics, inspection_rates
from training.metrics.figures import confusion_figure
from training.schema.errors import ConfigError
from training.tasks import register_task
from training.tasks.base import ReportTable
from training.tasks.image import ImageOutputs, ImageTask


def validation_metrics(
    logits: torch.Tensor, targets: torch.Tensor, class_names: list[str], settings: EvalConfig
) -> dict[str, float]:
    """The task's validation metrics but the loss: `classification_metrics`, and the calibrated
    threshold with its overkill when `eval.target_miss_rate` is set."""
    metrics = classification_metrics(logits, targets, class_names, settings.good_class)
    if settings.target_miss_rate is not None:
        good = class_names.index(settings.good_class)
        metrics.update(calibration_metrics(logits.softmax(dim=1), targets, good, settings.target_miss_rate))
    return metrics


def deployed_classes(probs: torch.Tensor, good: int | None, threshold: float | None) -> torch.Tensor:
    """The class each image of (N, C) `probs` is called as deployed: with a threshold, the likeliest
    defect class when P(defect) = 1 - P(good) >= it, else the good class; without one, the argmax."""
    if threshold is None or good is None:
        return probs.argmax(dim=1)
    defective = (1.0 - probs[:, good].double()) >= threshold  # in float64, as the calibration compares
    likeliest_defect = probs.index_fill(1, torch.tensor([good]), -1.0).argmax(dim=1)
    return torch.where(defective, likeliest_defect, good)


def rates_at_threshold(probs: torch.Tensor, targets: torch.Tensor, good: int, threshold: float) -> tuple[float, float]:
    """(miss rate, overkill rate) when an image is called defective at P(defect) = 1 - P(good) >= threshold."""
    predicted = deployed_classes(probs, good, threshold)
    return inspection_rates(multiclass_confusion_matrix(predicted, targets, probs.shape[1]), good)


@dataclass(frozen=True)
class ClassificationOutputs(ImageOutputs):
    """A classifier's outputs; miss and overkill rates at `eval.decision_threshold` when it is set (as
    deployed), else at the argmax (as validation scores them)."""

    class_names: list[str]
    settings: EvalConfig
    headline: ClassVar[str] = "macro_f1"

    @property
    def probs(self) -> torch.Tensor:
        """(N, C) class probabilities."""
        return self.logits.softmax(dim=1)

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        logits, targets = self.at(indices)
        metrics = validation_metrics(logits, targets, self.class_names, self.settings)
        threshold = self.settings.decision_threshold
        if threshold is not None and "miss_rate" in metrics:
            good = self.class_names.index(self.settings.good_class)
            rates = rates_at_threshold(logits.softmax(dim=1), targets, good, threshold)
            metrics["miss_rate"], metrics["overkill_rate"] = rates
        return metrics


PRIOR_FLOOR = 1e-6  # a class absent from training gets this probability: a finite loss on validation


@register_task("classification")
class ClassificationTask(ImageTask):
    dataset_class = ClassificationDataset
    target_dtype = torch.int64

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        self.mix_rng = np.random.default_rng(cfg.seed)
        super().__init__(cfg, runtime)
        weights = class_weights(self.train_set.labels, len(self.class_names), cfg.data.class_weight_power)
        self.criterion = create_loss(cfg.loss, self.class_names, cfg.eval.good_class, weights).to(runtime.device)

    def train_sampler(self, dataset: ClassificationDataset) -> Sampler | None:
        if not self.cfg.data.weighted_sampler:
            return None
        return balanced_sampler(dataset.images.labels, self.shuffle_generator)

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        self.mix_rng = np.random.default_rng(epoch_seed_of(self.cfg.seed, epoch))

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        super().check(cfg)
        if is_multilabel(cfg.data):
            raise ConfigError("data.kind", f"'{cfg.data.kind}' is multi-label data: use task: multilabel")
        names = class_names(cfg.data)
        if cfg.loss.focal_alpha is not None and cfg.eval.good_class not in names:
            raise ConfigError("loss.focal_alpha", f"needs the good class '{cfg.eval.good_class}' among {names}")
        defect_alpha(cfg.loss.focal_alpha, names, cfg.eval.good_class)  # refuses 'auto' before any trial
        if cfg.eval.target_miss_rate is not None and cfg.eval.good_class not in names:
            raise ConfigError("eval.target_miss_rate", f"needs the good class '{cfg.eval.good_class}' among {names}")

    @classmethod
    def report_tables(cls, cfg: TrainConfig, runtime: Runtime, checkpoint: Path, label: str) -> list[ReportTable]:
        """The validation confusion matrix (rows = truth) of the checkpoint's model."""
        task = cls(cfg, runtime)
        task.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        logits, targets = task.predictions()
        names = task.class_names
        counts = multiclass_confusion_matrix(logits.argmax(dim=1), targets, len(names)).numpy()
        return [
            ReportTable(
                name="confusion",
                description="validation confusion matrix",
                header=["true \\ predicted", *names],
                rows=[[name, *row] for name, row in zip(names, counts.tolist())],
                figure=confusion_figure(names, counts, f"{label}: validation confusion"),
                summary=f"confusion matrix of {label} over {int(counts.sum())} validation images",
            )
        ]

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = self._train_inputs(batch[0]), batch[1].to(self.runtime.device)
        if mix_enabled(self.augment_cfg):
            images, labels = mix_batch(images, labels, len(self.class_names), self.augment_cfg, self.mix_rng)
        return self.criterion(self.model(images), labels)

    def val_logits(self, images: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, self._inputs(images), self.cfg.eval.tta)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def scored(self, logits: torch.Tensor, targets: torch.Tensor) -> ClassificationOutputs:
        return ClassificationOutputs(logits, targets, self.class_names, self.cfg.eval)

    def metrics_of(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return validation_metrics(logits, targets, self.class_names, self.cfg.eval)

    def prior_logits(self) -> torch.Tensor:
        """Log class frequencies of the training split: the commonest class wins every image."""
        counts = np.bincount(self.train_set.labels, minlength=len(self.class_names))
        return torch.as_tensor(counts / counts.sum(), dtype=torch.float32).clamp_min(PRIOR_FLOOR).log()
