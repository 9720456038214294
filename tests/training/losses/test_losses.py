"""Losses: the focal loss formula, its reductions to cross-entropy, alpha weighting, the registry."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch
import torch.nn.functional as F

from training.config import LossConfig
from training.losses.classification import LOSSES, FocalLoss, create_loss, defect_alpha

CLASSES = ["good", "scratch", "rust"]

# Two samples, three classes: a fairly confident correct "good" and a badly wrong "rust".
LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
TARGETS = [0, 2]


def _p_t() -> tuple[float, float]:
    """Softmax probability of the true class for both samples, by hand."""
    p_good = math.exp(2.0) / (math.exp(2.0) + math.exp(0.0) + math.exp(-1.0))  # 0.84379...
    p_rust = math.exp(0.0) / (math.exp(0.5) + math.exp(1.5) + math.exp(0.0))  # 0.14024...
    return p_good, p_rust


def test_focal_loss_matches_hand_computed_value_with_alpha():
    p_good, p_rust = _p_t()
    gamma, alpha = 2.0, 0.25
    # good is weighted 1 - alpha = 0.75, the defect class rust by alpha = 0.25
    by_hand = (
        -0.75 * (1 - p_good) ** gamma * math.log(p_good) + -0.25 * (1 - p_rust) ** gamma * math.log(p_rust)
    ) / 2
    loss = create_loss(LossConfig(name="focal", focal_gamma=gamma, focal_alpha=alpha), CLASSES, "good")
    got = loss(torch.tensor(LOGITS), torch.tensor(TARGETS))
    # focal loss is the mean over samples of -alpha_t (1 - p_t)^gamma log p_t
    assert got.item() == pytest.approx(by_hand, rel=1e-5)
    # sanity of the hand computation itself (0.0031082 + 0.3630054) / 2
    assert by_hand == pytest.approx(0.1830568, rel=1e-6)


def test_focal_loss_matches_hand_computed_value_without_alpha():
    p_good, p_rust = _p_t()
    by_hand = (-((1 - p_good) ** 2) * math.log(p_good) - (1 - p_rust) ** 2 * math.log(p_rust)) / 2
    got = FocalLoss(gamma=2.0)(torch.tensor(LOGITS), torch.tensor(TARGETS))
    # with no alpha every class weighs 1: the mean of -(1 - p_t)^gamma log p_t
    assert got.item() == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_loss_gamma_zero_without_alpha_equals_cross_entropy(label_smoothing):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=gen) * 3
    targets = torch.randint(0, 4, (8,), generator=gen)
    focal = FocalLoss(gamma=0.0, label_smoothing=label_smoothing)(logits, targets)
    expected = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    # gamma = 0 removes the focusing term, so focal loss is plain (label-smoothed) cross-entropy
    assert focal.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_create_loss_cross_entropy_equals_torch_cross_entropy(label_smoothing):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=gen)
    targets = torch.randint(0, 3, (6,), generator=gen)
    loss = create_loss(LossConfig(name="cross_entropy", label_smoothing=label_smoothing), CLASSES, "good")
    # the cross_entropy entry is torch's cross-entropy with the configured label smoothing
    assert loss(logits, targets).item() == pytest.approx(
        F.cross_entropy(logits, targets, label_smoothing=label_smoothing).item(), rel=1e-6
    )


def test_defect_alpha_weights_defects_by_alpha_and_good_by_one_minus_alpha():
    weights = defect_alpha(0.25, ["scratch", "good", "rust"], "good")
    # every defect class gets alpha, the good class (wherever it sits) gets 1 - alpha
    assert weights.tolist() == pytest.approx([0.25, 0.75, 0.25])


def test_defect_alpha_none_means_unweighted():
    # no alpha configured: no per-class weights at all
    assert defect_alpha(None, CLASSES, "good") is None


@pytest.mark.parametrize(("target", "weight"), [(0, 0.75), (1, 0.25), (2, 0.25)])
def test_focal_loss_alpha_scales_each_sample_by_its_class_weight(target, weight):
    logits = torch.tensor([[0.3, -0.2, 0.9]])
    targets = torch.tensor([target])
    unweighted = FocalLoss(gamma=2.0)(logits, targets)
    weighted = create_loss(LossConfig(name="focal", focal_gamma=2.0, focal_alpha=0.25), CLASSES, "good")(
        logits, targets
    )
    # a sample's loss is multiplied by alpha_t: 1 - alpha for good, alpha for a defect
    assert weighted.item() == pytest.approx(weight * unweighted.item(), rel=1e-6)


def test_loss_registry_keys_equal_config_choices():
    choices = set(get_args(LossConfig.model_fields["name"].annotation))
    # every loss the config accepts is registered and every registered loss is selectable
    assert set(LOSSES) == choices


def test_focal_loss_larger_gamma_down_weights_easy_examples():
    confident = torch.tensor([[4.0, 0.0, 0.0]])
    target = torch.tensor([0])
    losses = [FocalLoss(gamma=g)(confident, target).item() for g in (0.0, 0.5, 1.0, 2.0, 5.0)]
    # on a confident correct sample (p_t near 1) the loss shrinks strictly as gamma grows
    assert all(a > b for a, b in zip(losses, losses[1:]))


def test_focal_loss_down_weights_easy_examples_more_than_hard_ones():
    target = torch.tensor([0])
    easy, hard = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[-2.0, 1.0, 0.0]])

    def kept(logits: torch.Tensor) -> float:
        return (FocalLoss(gamma=2.0)(logits, target) / F.cross_entropy(logits, target)).item()

    # the share of cross-entropy focal loss keeps is larger for a misclassified (hard) sample
    assert kept(hard) > 10 * kept(easy)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 0.9, 1.0, 2.0, 3.5, 5.0])
def test_focal_loss_has_finite_loss_and_gradients_on_a_saturated_prediction(gamma):
    # p_t rounds to exactly 1 in float32: (1 - p)**gamma has an infinite slope there for gamma < 1
    logits = torch.tensor([[40.0, 0.0, 0.0], [0.5, 1.5, 0.0]], requires_grad=True)
    for target in (torch.tensor([0, 2]), F.one_hot(torch.tensor([0, 2]), 3).float()):  # hard and soft targets
        logits.grad = None
        loss = FocalLoss(gamma)(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all(), target


def test_focal_modulation_has_one_home_shared_by_the_focal_losses():
    import training.losses.detection as detection_losses
    import training.losses.multilabel as multilabel_losses
    from training.losses import classification as losses
    from training.losses import focal

    # the classification loss and the sigmoid helper that the multi-label and detection losses use
    # take the modulation from training.losses.focal, so a fix there reaches all four
    assert losses.focal_modulation is focal.focal_modulation
    assert multilabel_losses.sigmoid_focal_terms is focal.sigmoid_focal_terms
    assert detection_losses.sigmoid_focal_terms is focal.sigmoid_focal_terms
