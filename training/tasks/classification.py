"""Image classification (binary or multi-class) with a timm backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler
from torchmetrics.functional.classification import multiclass_confusion_matrix

from training.config import TrainConfig
from training.data import class_names, is_multilabel
from training.data.dataset import ClassificationDataset
from training.errors import ConfigError
from training.figures import confusion_figure
from training.imbalance import balanced_sampler, class_weights
from training.losses.classification import create_loss, defect_alpha
from training.metrics.calibration import CALIBRATION_METRICS, THRESHOLD_METRIC, calibration_metrics
from training.metrics.classification import classification_metric_names, classification_metrics
from training.mix import mix_batch, mix_enabled
from training.runtime import Runtime, epoch_seed_of
from training.tasks import register_task
from training.tasks.base import ExportedSetting, ReportTable
from training.tasks.image import ImageTask
from training.tta import tta_logits


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
    def metric_names(cls, cfg: TrainConfig) -> list[str]:
        names = classification_metric_names(class_names(cfg.data), cfg.eval.good_class)
        names += CALIBRATION_METRICS if cfg.eval.target_miss_rate is not None else []
        return ["train/loss", "val/loss"] + [f"val/{n}" for n in names]

    @classmethod
    def exported_settings(cls, metrics: dict[str, float]) -> list[ExportedSetting]:
        """The calibrated decision threshold, when the trial reported one (eval.target_miss_rate set)."""
        threshold = metrics.get(f"val/{THRESHOLD_METRIC}")
        if threshold is None:
            return []
        note = (
            f"eval.decision_threshold = {threshold:.6g}: in deployment call an image defective when "
            "1 - P(good) >= it (the validation threshold that met eval.target_miss_rate)"
        )
        return [ExportedSetting("eval.decision_threshold", threshold, note)]

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

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        logits, targets = self.predictions()
        metrics = classification_metrics(logits, targets, self.class_names, self.cfg.eval.good_class)
        metrics["loss"] = float(self.criterion(logits.to(self.runtime.device), targets.to(self.runtime.device)))
        if self.cfg.eval.target_miss_rate is not None:
            good = self.class_names.index(self.cfg.eval.good_class)
            metrics.update(calibration_metrics(logits.softmax(dim=1), targets, good, self.cfg.eval.target_miss_rate))
        return {f"val/{k}": v for k, v in metrics.items()}
