"""The classification loss of one detector stage (RPN objectness, ROI classifier, RetinaNet head).

Both stages feed logits and targets of the anchors/proposals the detector sampled: binary (N,)
logits with 0/1 targets for the RPN, (N, C) logits with class-index targets for the ROI classifier.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from training.config import DetectionLossPart

StageLossFn = Callable[[torch.Tensor, torch.Tensor, DetectionLossPart], torch.Tensor]


def _one_hot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0/1 targets shaped like `logits`: binary targets as they are, class indices one-hot."""
    if logits.dim() == 1:
        return targets.to(logits.dtype)
    return F.one_hot(targets, logits.shape[1]).to(logits.dtype)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, part: DetectionLossPart) -> torch.Tensor:
    if logits.dim() == 1:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    return F.cross_entropy(logits, targets)


def _focal(logits: torch.Tensor, targets: torch.Tensor, part: DetectionLossPart) -> torch.Tensor:
    # Summed over classes and averaged over samples: the same scale as the cross-entropy it replaces
    # (torchvision's reduction="mean" would also divide by the number of classes).
    alpha = -1.0 if part.focal_alpha is None else part.focal_alpha  # torchvision: alpha < 0 = unweighted
    loss = sigmoid_focal_loss(logits, _one_hot(logits, targets), alpha=alpha, gamma=part.focal_gamma, reduction="sum")
    return loss / max(1, logits.shape[0])


STAGE_LOSSES: dict[str, StageLossFn] = {"cross_entropy": _cross_entropy, "focal": _focal}


class StageLoss:
    """`weight` x the configured loss of sampled logits against their targets, computed in float32."""

    def __init__(self, part: DetectionLossPart):
        self.part = part
        self.loss = STAGE_LOSSES[part.name]

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.part.weight * self.loss(logits.float(), targets, self.part)
