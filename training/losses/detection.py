"""The classification loss of one detector stage (RPN objectness, ROI classifier, RetinaNet head).

Both stages feed logits and targets of the anchors/proposals the detector sampled: binary (N,)
logits with 0/1 targets for the RPN, (N, C) logits with class-index targets for the ROI classifier.
Each loss gives one value per sample; `StageLoss` reduces them, optionally weighted per sample
(Soft Teacher's background weights).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from training.config import DetectionLossPart
from training.losses.focal import sigmoid_focal_terms

StageLossFn = Callable[[torch.Tensor, torch.Tensor, DetectionLossPart], torch.Tensor]


def _one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0/1 targets shaped like `logits`: binary targets as they are, class indices one-hot."""
    if logits.dim() == 1:
        return targets.to(logits.dtype)
    return F.one_hot(targets, logits.shape[1]).to(logits.dtype)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, part: DetectionLossPart) -> torch.Tensor:
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, targets, reduction="none")


def _focal(logits: torch.Tensor, targets: torch.Tensor, part: DetectionLossPart) -> torch.Tensor:
    # Summed over classes per sample: averaged over samples, the same scale as the cross-entropy it
    # replaces (torchvision's reduction="mean" would also divide by the number of classes).
    terms = sigmoid_focal_terms(logits, _one_hot(logits, targets), part.focal_gamma, part.focal_alpha)
    return terms if logits.dim() == 1 else terms.sum(1)


STAGE_LOSSES: dict[str, StageLossFn] = {"cross_entropy": _cross_entropy, "focal": _focal}


class StageLoss:
    """`weight` x the configured loss of sampled logits against their targets, computed in float32:
    the mean over samples, or with `sample_weights` their weighted sum / max(sum of weights, 1)
    (mmdetection's Soft Teacher normalisation)."""

    def __init__(self, part: DetectionLossPart):
        self.part = part
        self.loss = STAGE_LOSSES[part.name]

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, sample_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        per_sample = self.loss(logits.float(), targets, self.part)
        if sample_weights is None:
            return self.part.weight * per_sample.sum() / max(1, per_sample.shape[0])
        weights = sample_weights.to(per_sample)
        return self.part.weight * (per_sample * weights).sum() / weights.sum().clamp(min=1.0)
