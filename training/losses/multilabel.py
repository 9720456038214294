"""Multi-label losses (one sigmoid per class) behind a registry: name -> builder(LossConfig, class frequencies).

`cross_entropy` is binary cross-entropy per class; `focal` is the sigmoid focal loss with a fixed
per-positive weight `loss.focal_alpha` or, for `auto`, one per class from the training split.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from training.config import LossConfig
from training.losses.focal import sigmoid_focal_terms

# a class seen in (almost) no training image, or in (almost) all, still gets a little of both weights
ALPHA_RANGE = (0.01, 0.99)

MultiLabelLossBuilder = Callable[[LossConfig, np.ndarray], nn.Module]
MULTILABEL_LOSSES: dict[str, MultiLabelLossBuilder] = {}


def register_multilabel_loss(name: str) -> Callable[[MultiLabelLossBuilder], MultiLabelLossBuilder]:
    def add(builder: MultiLabelLossBuilder) -> MultiLabelLossBuilder:
        MULTILABEL_LOSSES[name] = builder
        return builder

    return add


def create_multilabel_loss(cfg: LossConfig, frequencies: np.ndarray) -> nn.Module:
    """The loss named by `cfg.name`; `frequencies[c]` = share of training images showing class c."""
    return MULTILABEL_LOSSES[cfg.name](cfg, frequencies)


def dynamic_alpha(frequencies: np.ndarray) -> torch.Tensor:
    """alpha_c = 1 - freq_c (clipped to ALPHA_RANGE): a class's positives and negatives then carry the
    same total weight, freq_c * alpha_c = (1 - freq_c) * (1 - alpha_c), however rare the class."""
    return torch.tensor(np.clip(1.0 - np.asarray(frequencies, np.float64), *ALPHA_RANGE), dtype=torch.float32)


class SigmoidFocalLoss(nn.Module):
    """Mean over images and classes of alpha_t (1 - p_t)^gamma * BCE (Lin et al. 2017, one sigmoid per class).

    `alpha[c]` weighs class c's positives and 1 - alpha[c] its negatives (None = all 1); gamma 0 and
    no alpha is plain binary cross-entropy. Label smoothing pulls the 0/1 targets toward 0.5.
    """

    def __init__(self, gamma: float, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("alpha", alpha if alpha is not None else torch.empty(0))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        targets = targets.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        alpha = self.alpha if self.alpha.numel() else None
        return sigmoid_focal_terms(logits, targets, self.gamma, alpha).mean()


def _alpha(cfg: LossConfig, frequencies: np.ndarray) -> torch.Tensor | None:
    if cfg.focal_alpha == "auto":
        return dynamic_alpha(frequencies)
    return None if cfg.focal_alpha is None else torch.full((len(frequencies),), float(cfg.focal_alpha))


@register_multilabel_loss("focal")
def _focal(cfg: LossConfig, frequencies: np.ndarray) -> nn.Module:
    return SigmoidFocalLoss(cfg.focal_gamma, _alpha(cfg, frequencies), cfg.label_smoothing)


@register_multilabel_loss("cross_entropy")
def _binary_cross_entropy(cfg: LossConfig, frequencies: np.ndarray) -> nn.Module:
    return SigmoidFocalLoss(0.0, None, cfg.label_smoothing)
