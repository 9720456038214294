"""Class imbalance: (1/freq)^power loss weights and the class-balanced sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import LossConfig
from training.data.imbalance import balanced_sampler, class_weights
from training.losses.classification import create_loss

# 624 good, 415 defect (the binary project's split) plus a rare third class
LABELS = np.repeat([0, 1, 2], [624, 415, 41])


def test_class_weights_power_zero_is_off():
    # power 0 means uniform weights: no weighting at all
    assert class_weights(LABELS, 3, 0.0) is None


def test_class_weights_power_one_is_inverse_frequency():
    weights = class_weights(LABELS, 3, 1.0).double()
    counts = torch.tensor([624.0, 415.0, 41.0], dtype=torch.float64)
    # proportional to 1 / count: every class carries the same total weight
    totals = weights * counts
    assert torch.allclose(totals, totals.mean().expand(3))
    # normalized to mean 1 over the samples
    assert (weights * counts).sum() / counts.sum() == pytest.approx(1.0)


def test_class_weights_half_power_is_damped():
    full, half = class_weights(LABELS, 3, 1.0), class_weights(LABELS, 3, 0.5)
    # damped weights lie between uniform and inverse frequency: the rare/common ratio is the square root
    assert (half[2] / half[0]).item() == pytest.approx(((full[2] / full[0]) ** 0.5).item(), rel=1e-5)


def test_class_weights_absent_class_gets_the_largest_weight():
    weights = class_weights(np.array([0, 0, 0, 1]), 3, 1.0)
    # a class missing from training still gets a weight, the largest one present
    assert weights[2] == weights.max() and weights[2] > 0


def test_class_weights_reach_the_cross_entropy_loss():
    weights = class_weights(LABELS, 3, 1.0)
    loss = create_loss(LossConfig(name="cross_entropy"), ["good", "a", "b"], "good", weights)
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    # the loss is torch's weighted cross-entropy with those weights
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    assert loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_balanced_sampler_draws_classes_near_uniformly():
    labels = np.repeat([0, 1, 2], [1500, 400, 100])
    generator = torch.Generator().manual_seed(0)
    drawn = labels[list(balanced_sampler(labels, generator))]
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    # 2000 draws: each class near a third although the data is 75/20/5
    assert len(drawn) == 2000 and np.all(np.abs(shares - 1 / 3) < 0.05)


def test_balanced_sampler_same_generator_seed_same_draws():
    labels = np.repeat([0, 1], [90, 10])
    first = list(balanced_sampler(labels, torch.Generator().manual_seed(3)))
    again = list(balanced_sampler(labels, torch.Generator().manual_seed(3)))
    # a per-epoch seed reproduces the epoch's draws (resume sees the same batches)
    assert first == again
