"""Classification losses behind a registry: name -> builder(LossConfig, class_names, good_class)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from training.config import LossConfig
from training.losses.focal import focal_modulation
from training.schema.errors import ConfigError

# builder(cfg, class_names, good_class, class_weights): class_weights is a per-class tensor or None
LossBuilder = Callable[[LossConfig, list[str], str, torch.Tensor | None], nn.Module]
LOSSES: dict[str, LossBuilder] = {}


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    def add(builder: LossBuilder) -> LossBuilder:
        LOSSES[name] = builder
        return builder

    return add


def create_loss(
    cfg: LossConfig, class_names: list[str], good_class: str, class_weights: torch.Tensor | None = None
) -> nn.Module:
    """The loss named by `cfg.name`; `class_weights` (see training.data.imbalance) multiply each class's term."""
    return LOSSES[cfg.name](cfg, class_names, good_class, class_weights)


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): mean of -alpha_t (1 - p_t)^gamma log p_t.

    `alpha` holds one weight per class (None = all 1), so rare defect classes can be up-weighted
    against the dominant good class.
    """

    def __init__(self, gamma: float, alpha: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("alpha", alpha if alpha is not None else torch.empty(0))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        if target.is_floating_point():
            return self._soft(log_p, target)
        ce = F.nll_loss(log_p, target, reduction="none")
        if self.label_smoothing:
            ce = (1 - self.label_smoothing) * ce - self.label_smoothing * log_p.mean(dim=1)
        p_t = log_p.gather(1, target[:, None]).squeeze(1).exp()
        loss = focal_modulation(p_t, self.gamma) * ce
        if self.alpha.numel():
            loss = self.alpha[target] * loss
        return loss.mean()

    def _soft(self, log_p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Soft targets (MixUp/CutMix): -sum_c alpha_c t_c (1 - p_c)^gamma log p_c, which is the loss
        above for a one-hot t (up to how label smoothing enters)."""
        if self.label_smoothing:
            target = (1 - self.label_smoothing) * target + self.label_smoothing / target.shape[1]
        terms = -target * focal_modulation(log_p.exp(), self.gamma) * log_p
        if self.alpha.numel():
            terms = terms * self.alpha
        return terms.sum(dim=1).mean()


def defect_alpha(alpha: float | str | None, class_names: list[str], good_class: str) -> torch.Tensor | None:
    """Per-class weights: `alpha` for every defect class, `1 - alpha` for the good class."""
    if alpha is None:
        return None
    if alpha == "auto":
        raise ConfigError("loss.focal_alpha", "'auto' is for the multilabel task; here give a number in (0, 1) or none")
    return torch.tensor([1 - alpha if name == good_class else alpha for name in class_names])


@register_loss("focal")
def _focal(cfg: LossConfig, class_names: list[str], good_class: str, class_weights: torch.Tensor | None) -> nn.Module:
    alpha = defect_alpha(cfg.focal_alpha, class_names, good_class)
    if class_weights is not None:
        alpha = class_weights if alpha is None else alpha * class_weights
    return FocalLoss(cfg.focal_gamma, alpha, cfg.label_smoothing)


@register_loss("cross_entropy")
def _cross_entropy(
    cfg: LossConfig, class_names: list[str], good_class: str, class_weights: torch.Tensor | None
) -> nn.Module:
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=cfg.label_smoothing)
