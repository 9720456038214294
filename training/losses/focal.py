"""The focal modulation (1 - p_t)**gamma of Lin et al. 2017, in one place for every focal loss
(softmax classification, multi-label sigmoid, the detector stages and RetinaNet's head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (1 - p) is floored here: for 0 < gamma < 1 the slope of (1 - p)**gamma is infinite at p = 1, which a
# confident, correct float32 prediction reaches exactly, and inf * (log 1 = 0) makes a NaN gradient.
MIN_FOCAL_BASE = 1e-6


def focal_modulation(p: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p)**gamma, with a finite gradient for every gamma >= 0."""
    return (1 - p).clamp(min=MIN_FOCAL_BASE).pow(gamma)


def sigmoid_focal_terms(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, alpha: float | torch.Tensor | None = None
) -> torch.Tensor:
    """Elementwise alpha_t (1 - p_t)**gamma * BCE(logits, targets), p = sigmoid(logits): torchvision's
    sigmoid_focal_loss (reduction "none"; alpha None = unweighted) with the floored modulation.
    `alpha` may be a per-class tensor broadcast over the last dimension."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        loss = loss * focal_modulation(p * targets + (1 - p) * (1 - targets), gamma)
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss
