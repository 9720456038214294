"""MixUp / CutMix: soft targets of label mass 1, mixed images, reproducible draws, losses that take them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.augment.mix import mix_batch, mix_enabled
from training.config import AugmentConfig, LossConfig
from training.losses.classification import FocalLoss, create_loss

CLASSES = ["good", "scratch", "rust"]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 16, 16, generator=generator), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])


@pytest.mark.parametrize(
    "knobs", [{"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 1.0, "cutmix_alpha": 1.0}]
)
def test_mix_batch_soft_targets_keep_label_mass_one(knobs):
    images, labels = _batch()
    cfg = AugmentConfig(mix_prob=1.0, **knobs)
    for seed in range(5):
        mixed, targets = mix_batch(images, labels, 3, cfg, np.random.default_rng(seed))
        # every row of the soft targets is a distribution: non-negative, summing to 1
        assert targets.shape == (8, 3) and (targets >= 0).all()
        assert torch.allclose(targets.sum(dim=1), torch.ones(8))
        # the images keep their shape and were changed
        assert mixed.shape == images.shape and not torch.equal(mixed, images)


def test_cutmix_target_share_matches_pasted_area():
    images = torch.zeros(2, 1, 10, 10)
    images[1] = 1.0
    labels = torch.tensor([0, 1])
    cfg = AugmentConfig(cutmix_alpha=1.0, mix_prob=1.0)
    for seed in range(10):
        mixed, targets = mix_batch(images, labels, 2, cfg, np.random.default_rng(seed))
        # image 0 is all 0 and image 1 all 1: the share of label 1 in image 0's target is exactly the
        # fraction of its pixels pasted from image 1 (0 when the shuffle paired it with itself)
        assert targets[0, 1].item() == pytest.approx(mixed[0].mean().item(), abs=1e-6)


def test_mix_prob_zero_or_no_alpha_leaves_the_batch():
    images, labels = _batch()
    # no alpha or probability 0: mixing is off and the batch passes unchanged
    assert not mix_enabled(AugmentConfig(mix_prob=1.0)) and not mix_enabled(AugmentConfig(mixup_alpha=1.0, mix_prob=0))
    out, targets = mix_batch(images, labels, 3, AugmentConfig(mixup_alpha=1.0, mix_prob=0.0), np.random.default_rng(0))
    assert torch.equal(out, images) and torch.equal(targets, labels)


def test_mix_batch_same_seed_same_mix():
    images, labels = _batch()
    cfg = AugmentConfig(mixup_alpha=0.4, cutmix_alpha=1.0, mix_prob=0.7)
    first = mix_batch(images, labels, 3, cfg, np.random.default_rng(5))
    again = mix_batch(images, labels, 3, cfg, np.random.default_rng(5))
    # the task re-seeds the generator per epoch: the same seed mixes identically
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (2.0, None), (2.0, 0.25)])
def test_focal_soft_one_hot_targets_equal_hard_targets(gamma, alpha):
    loss = create_loss(LossConfig(name="focal", focal_gamma=gamma, focal_alpha=alpha), CLASSES, "good")
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    # the soft-target focal loss is the usual focal loss when the targets are one-hot
    assert loss(logits, one_hot).item() == pytest.approx(loss(logits, labels).item(), rel=1e-5)


def test_focal_soft_targets_gamma_zero_is_soft_cross_entropy():
    logits = torch.randn(5, 3)
    targets = torch.softmax(torch.randn(5, 3), dim=1)
    # gamma 0 without alpha: the focal loss of soft targets is cross-entropy with probabilities
    expected = torch.nn.functional.cross_entropy(logits, targets)
    assert FocalLoss(0.0)(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)
