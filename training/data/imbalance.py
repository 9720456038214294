"""Class imbalance: loss class weights (1/freq)^power and a sampler that draws classes near uniformly."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler


def class_weights(labels: np.ndarray, num_classes: int, power: float) -> torch.Tensor | None:
    """Per-class loss weights (1 / freq)^power, scaled so that they average 1 over the training samples
    (the loss keeps its scale whatever the power); None when power is 0 (uniform).

    power 1 = inverse frequency (every class carries the same total weight), 0.5 = damped.
    A class absent from `labels` gets the largest weight present, so it is not ignored if it shows up.
    """
    if power == 0:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = (counts[present] / counts.sum()) ** -power
    weights /= (weights * counts).sum() / counts.sum()
    weights[~present] = weights[present].max()
    return torch.tensor(weights, dtype=torch.float32)


def balanced_sampler(labels: np.ndarray, generator: torch.Generator) -> WeightedRandomSampler:
    """Draws len(labels) indices with replacement, each class with the same total probability;
    reproducible through `generator` (re-seeded per epoch by the task)."""
    counts = np.bincount(labels)
    per_sample = 1.0 / counts[labels]
    return WeightedRandomSampler(
        torch.as_tensor(per_sample, dtype=torch.double), num_samples=len(labels), replacement=True, generator=generator
    )
