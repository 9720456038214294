"""The multilabel task: dynamic alpha, the sigmoid focal loss, metrics, per-class thresholds, a real fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.config import LossConfig, TrainConfig
from training.data import load_splits
from training.data.synthetic_multilabel import generate
from training.loop.fit import fit
from training.losses.classification import create_loss
from training.losses.multilabel import SigmoidFocalLoss, create_multilabel_loss, dynamic_alpha
from training.metrics.multilabel import best_f1_threshold, inspection_rates, multilabel_metrics
from training.schema.config_file import validate_model
from training.schema.errors import ConfigError
from training.tasks import get_task

CLASSES = ["scratch", "rust"]
# four images: (scratch, rust) probabilities and truth; image 3 is clean, image 4's scratch scores 0.4
PROBS = [[0.9, 0.2], [0.6, 0.7], [0.3, 0.1], [0.4, 0.45]]
TRUTH = [[1, 0], [1, 1], [0, 0], [1, 0]]


def tiny_config(**data) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "task": "multilabel",
            "data": {
                "kind": "synthetic_multilabel",
                "image_size": 32,
                "batch_size": 8,
                "synthetic": {"count": 40},
                **data,
            },
            "model": {"name": "resnet10t"},
            "loss": {"name": "focal", "focal_alpha": "auto"},
            "optim": {"schedule": "constant"},
            "train": {"epochs": 1, "device": "cpu"},
        }
    )


def test_dynamic_alpha_is_one_minus_class_frequency():
    alpha = dynamic_alpha(np.array([0.1, 0.5, 0.8]))
    # alpha_c = 1 - freq_c
    assert alpha.tolist() == pytest.approx([0.9, 0.5, 0.2])
    # so each class's positives and negatives carry the same total weight: freq * alpha = (1 - freq)(1 - alpha)
    freq = torch.tensor([0.1, 0.5, 0.8])
    assert (freq * alpha).tolist() == pytest.approx(((1 - freq) * (1 - alpha)).tolist())


def test_dynamic_alpha_clips_absent_and_ubiquitous_classes():
    # a class never (always) seen in training keeps a little weight on its negatives (positives)
    assert dynamic_alpha(np.array([0.0, 1.0])).tolist() == pytest.approx([0.99, 0.01])


def test_auto_alpha_comes_from_the_frequencies_given():
    loss = create_multilabel_loss(LossConfig(name="focal", focal_alpha="auto"), np.array([0.25, 0.04]))
    assert loss.alpha.tolist() == pytest.approx([0.75, 0.96])
    # a fixed alpha is the same for every class
    fixed = create_multilabel_loss(LossConfig(name="focal", focal_alpha=0.3), np.array([0.25, 0.04]))
    assert fixed.alpha.tolist() == pytest.approx([0.3, 0.3])


def test_sigmoid_focal_loss_matches_hand_computed_value():
    logits, targets = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 1.0]])
    p = torch.sigmoid(logits)[0].tolist()
    gamma, alpha = 2.0, torch.tensor([0.75, 0.25])
    # mean over classes of -alpha_c (1 - p)^gamma log p for positives
    by_hand = (-0.75 * (1 - p[0]) ** 2 * math.log(p[0]) - 0.25 * (1 - p[1]) ** 2 * math.log(p[1])) / 2
    assert SigmoidFocalLoss(gamma, alpha)(logits, targets).item() == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_sigmoid_focal_loss_has_finite_loss_and_gradients_on_saturated_logits(gamma, label_smoothing):
    # sigmoid(+-100) is exactly 1 or 0 in float32: (1 - p_t)**gamma has an infinite slope there for gamma < 1
    logits = torch.tensor([[100.0, -100.0, 0.3, -100.0, 100.0]], requires_grad=True)
    loss = SigmoidFocalLoss(gamma, torch.full((5,), 0.25), label_smoothing)(logits, torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_cross_entropy_is_binary_cross_entropy_per_class():
    logits, targets = torch.randn(5, 3), torch.randint(0, 2, (5, 3)).float()
    loss = create_multilabel_loss(LossConfig(name="cross_entropy"), np.full(3, 0.5))
    # loss.name cross_entropy means BCE with one sigmoid per class
    assert loss(logits, targets).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, targets).item())


def test_classification_focal_loss_refuses_auto_alpha():
    # auto needs class frequencies only the multilabel task passes: one clear error naming the key
    with pytest.raises(ConfigError, match="loss.focal_alpha"):
        create_loss(LossConfig(name="focal", focal_alpha="auto"), ["good", "scratch"], "good")


@pytest.mark.parametrize("value", [0.0, 1.0, "often", True])
def test_focal_alpha_accepts_only_a_fraction_auto_or_none(value):
    with pytest.raises(ConfigError, match=r"loss\.focal_alpha: expected a number in \(0, 1\), 'auto' or none"):
        validate_model(TrainConfig, {"loss": {"focal_alpha": value}})


def test_multilabel_metrics_on_a_hand_made_case():
    metrics = multilabel_metrics(torch.tensor(PROBS), torch.tensor(TRUTH), CLASSES)
    # at 0.5: scratch TP 2, FN 1 -> F1 0.8; rust TP 1 -> F1 1; micro: TP 3, FP 0, FN 1 -> 6/7
    assert metrics["f1/scratch"] == pytest.approx(0.8)
    assert metrics["f1/rust"] == pytest.approx(1.0)
    assert metrics["macro_f1"] == pytest.approx(0.9)
    assert metrics["micro_f1"] == pytest.approx(6 / 7)
    # every positive outranks every negative: AUROC 1 for both classes and their mean
    assert metrics["auroc/scratch"] == metrics["auroc/rust"] == metrics["auroc"] == pytest.approx(1.0)
    # image 4 is defective but nothing crosses 0.5: 1 of 3 defective images missed; the clean image is passed
    assert metrics["miss_rate"] == pytest.approx(1 / 3)
    assert metrics["overkill_rate"] == 0.0
    # tuned thresholds sit midway between the lowest kept score and the next: (0.4 + 0.3) / 2, (0.7 + 0.45) / 2
    assert metrics["threshold/scratch"] == pytest.approx(0.35)
    assert metrics["threshold/rust"] == pytest.approx(0.575)
    assert metrics["macro_f1_tuned"] == pytest.approx(1.0)


def test_auroc_of_a_class_without_negatives_is_nan_and_left_out_of_the_mean():
    truth = torch.tensor([[1, 0], [1, 1], [1, 0], [1, 0]])
    metrics = multilabel_metrics(torch.tensor(PROBS), truth, CLASSES)
    assert math.isnan(metrics["auroc/scratch"])
    assert metrics["auroc"] == metrics["auroc/rust"]


@pytest.mark.parametrize(
    "scores, truth, expected",
    [
        ([0.2, 0.15, 0.1, 0.05], [1, 1, 0, 0], 0.125),  # separable below 0.5: the cut lands between the groups
        ([0.9, 0.8, 0.3], [1, 0, 1], 0.15),  # keeping all (F1 0.8) beats keeping the top one (F1 0.67)
        ([0.6, 0.6, 0.2], [1, 0, 0], 0.4),  # no cut between equal scores: both or neither
        ([0.7, 0.2], [0, 0], 0.5),  # no positive to find: keep 0.5
    ],
)
def test_best_f1_threshold(scores, truth, expected):
    assert best_f1_threshold(torch.tensor(scores), torch.tensor(truth)) == pytest.approx(expected)


def test_inspection_rates_count_images_not_labels():
    predicted = torch.tensor([[True, False], [False, False], [False, True], [False, False]])
    truth = torch.tensor([[False, True], [True, True], [False, False], [False, False]])
    # image 1 has a wrong class but is flagged: not a miss; image 2 is missed; image 3 is overkill, image 4 fine
    assert inspection_rates(predicted, truth) == (pytest.approx(0.5), pytest.approx(0.5))


def test_synthetic_multilabel_images_carry_several_classes_and_some_none():
    cfg = tiny_config(synthetic={"count": 200, "seed": 3}).data
    images = generate(cfg.synthetic, (32, 96))
    per_image = images.labels.sum(axis=1)
    # labels are one 0/1 column per defect class (good is no column); clean and multi-class images both occur
    assert images.labels.shape == (200, 4) and set(np.unique(images.labels)) == {0, 1}
    assert (per_image == 0).any() and (per_image >= 2).any()
    # the share of clean images follows good_fraction, and the images have the asked (height, width)
    assert (per_image == 0).mean() == pytest.approx(cfg.synthetic.good_fraction, abs=0.01)
    assert images.images[0].shape == (32, 96, 3)
    # deterministic from the seed
    assert np.array_equal(generate(cfg.synthetic, (32, 96)).images[5], images.images[5])


def test_multilabel_task_rejects_single_label_data():
    with pytest.raises(ConfigError, match="data.kind"):
        get_task("multilabel").check(tiny_config(kind="synthetic"))


def test_multilabel_task_fits_one_epoch_on_long_images():
    cfg = tiny_config(image_width=128)
    epochs = []
    metrics = fit(cfg, on_epoch=epochs.append)
    # every metric the task declares is reported, and nothing else from the task
    declared = get_task("multilabel").metric_names(cfg)
    assert set(metrics) == set(declared) | {"train/lr", "time/epoch_s"}
    assert len(epochs) == 1 and math.isfinite(metrics["train/loss"])
    # one F1 per defect class of the synthetic set; thresholds are probabilities
    classes = ["scratch", "rust", "chip", "crack"]
    assert {k for k in metrics if k.startswith("val/f1/")} == {f"val/f1/{c}" for c in classes}
    assert all(0 <= metrics[f"val/threshold/{c}"] <= 1 for c in classes)
    # the split holds 2-D multi-hot labels on both sides
    splits = load_splits(cfg.data)
    assert splits.train.labels.ndim == 2 and splits.val.labels.shape[1] == 4


@pytest.mark.parametrize(
    "change, key",
    [({"augment": {"mixup_alpha": 0.2}}, "augment.mixup_alpha"), ({"eval": {"tta": ["hflip"]}}, "eval.tta")],
)
def test_multilabel_task_rejects_single_label_knobs(change, key):
    cfg = tiny_config().model_dump()
    for section, values in change.items():
        cfg[section].update(values)
    # a knob built for one class per image is an error up front, not silently ignored
    with pytest.raises(ConfigError, match=key):
        get_task("multilabel").check(TrainConfig.model_validate(cfg))
