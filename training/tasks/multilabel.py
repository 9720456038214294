"""Multi-label defect classification (Severstal steel style): any subset of the defect classes per
image, one sigmoid output per class; an image with no class predicted is good."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import torch

from training.config import TrainConfig
from training.data import is_multilabel
from training.data.dataset import MultiLabelDataset
from training.data.registry import DATA_KINDS
from training.loop.runtime import Runtime
from training.losses.multilabel import create_multilabel_loss
from training.metrics.multilabel import multilabel_metrics
from training.schema.errors import ConfigError
from training.tasks import register_task
from training.tasks.image import ImageOutputs, ImageTask


PRIOR_FLOOR = 1e-6  # a class never (or always) present in training: a finite logit

# knobs built for one class per image; rejected up front instead of silently ignored
_SINGLE_LABEL_KNOBS: dict[str, Callable[[TrainConfig], bool]] = {
    "data.class_weight_power": lambda cfg: cfg.data.class_weight_power > 0,
    "data.weighted_sampler": lambda cfg: cfg.data.weighted_sampler,
    "augment.mixup_alpha": lambda cfg: cfg.augment.mixup_alpha > 0,
    "augment.cutmix_alpha": lambda cfg: cfg.augment.cutmix_alpha > 0,
    "eval.tta": lambda cfg: bool(cfg.eval.tta),
    "eval.target_miss_rate": lambda cfg: cfg.eval.target_miss_rate is not None,
}


@dataclass(frozen=True)
class MultiLabelOutputs(ImageOutputs):
    """A multi-label classifier's outputs (one logit per class)."""

    class_names: list[str]
    headline: ClassVar[str] = "macro_f1"

    @property
    def probs(self) -> torch.Tensor:
        """(N, C) per-class probabilities."""
        return self.logits.sigmoid()

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        logits, targets = self.at(indices)
        return multilabel_metrics(logits.sigmoid(), targets, self.class_names)


@register_task("multilabel")
class MultiLabelTask(ImageTask):
    dataset_class = MultiLabelDataset
    target_dtype = torch.float32

    def __init__(self, cfg: TrainConfig, runtime: Runtime):
        super().__init__(cfg, runtime)
        # dynamic alpha comes from the training split only: validation stays unseen
        frequencies = self.train_set.labels.mean(axis=0)
        self.criterion = create_multilabel_loss(cfg.loss, frequencies).to(runtime.device)

    @classmethod
    def check(cls, cfg: TrainConfig) -> None:
        if not is_multilabel(cfg.data):
            kinds = ", ".join(kind for kind, spec in DATA_KINDS.items() if spec.multilabel)
            message = f"the multilabel task needs multi-label data ({kinds}), got '{cfg.data.kind}'"
            raise ConfigError("data.kind", message)
        super().check(cfg)
        for key, is_set in _SINGLE_LABEL_KNOBS.items():
            if is_set(cfg):
                raise ConfigError(key, "not supported by the multilabel task (single-label classification only)")

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        return self.criterion(self.model(self._train_inputs(images)), labels.to(self.runtime.device))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def scored(self, logits: torch.Tensor, targets: torch.Tensor) -> MultiLabelOutputs:
        return MultiLabelOutputs(logits, targets, self.class_names)

    def metrics_of(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return self.scored(logits, targets).metrics()

    def prior_logits(self) -> torch.Tensor:
        """Each class at its frequency in the training split (as a logit)."""
        frequencies = torch.as_tensor(self.train_set.labels.mean(axis=0), dtype=torch.float32)
        return torch.logit(frequencies.clamp(PRIOR_FLOOR, 1 - PRIOR_FLOOR))
