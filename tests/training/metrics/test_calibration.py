"""Decision-threshold calibration: the threshold meets the target miss rate, and its overkill is counted."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import TrainConfig
from training.metrics.calibration import OVERKILL_METRIC, THRESHOLD_METRIC, calibration_metrics, threshold_at_miss_rate
from training.schema.errors import ConfigError
from training.tasks import get_task

GOOD = 0  # class index of "good" in the hand-made sets below


def probs_from_defect_scores(scores: list[float], defect_class: list[int]) -> torch.Tensor:
    """Softmax-like rows whose P(good) = 1 - score, the rest on the given defect class."""
    rows = torch.zeros(len(scores), 3, dtype=torch.float64)
    for i, (score, cls) in enumerate(zip(scores, defect_class)):
        rows[i, GOOD] = 1.0 - score
        rows[i, cls] += score
    return rows


# 10 defect images, 5 good ones: P(defect) per image
DEFECT_SCORES = [0.05, 0.15, 0.30, 0.40, 0.55, 0.60, 0.70, 0.80, 0.90, 0.95]
GOOD_SCORES = [0.02, 0.10, 0.35, 0.50, 0.65]


def hand_made_set() -> tuple[torch.Tensor, torch.Tensor]:
    scores = DEFECT_SCORES + GOOD_SCORES
    labels = [1 + i % 2 for i in range(len(DEFECT_SCORES))] + [GOOD] * len(GOOD_SCORES)
    classes = [label if label != GOOD else 1 for label in labels]
    return probs_from_defect_scores(scores, classes), torch.tensor(labels)


@pytest.mark.parametrize(
    ("target", "threshold", "overkill"),
    [
        (0.2, 0.30, 3 / 5),  # 2 of 10 defects (0.05, 0.15) below 0.30; goods 0.35, 0.50, 0.65 at or above
        (0.0, 0.05, 4 / 5),  # no miss allowed: the lowest defect score; every good but 0.02 above it
        (0.5, 0.60, 1 / 5),
        (0.25, 0.30, 3 / 5),  # 2.5 misses allowed: still 2, since a third would exceed 25%
    ],
)
def test_calibration_threshold_hits_the_target_miss_rate(target, threshold, overkill):
    probs, labels = hand_made_set()
    metrics = calibration_metrics(probs, labels, GOOD, target)
    # the threshold is the highest one whose miss rate stays within the target
    assert metrics[THRESHOLD_METRIC] == pytest.approx(threshold)
    defect = 1.0 - probs[labels != GOOD, GOOD]  # P(defect) exactly as calibrated and deployed
    missed = float((defect < metrics[THRESHOLD_METRIC]).double().mean())
    # the miss rate at that threshold is exactly the allowed share (floor(target * 10) / 10)
    assert missed == pytest.approx(math.floor(target * 10) / 10) and missed <= target
    # any higher threshold (the next defect score) would miss more than the target
    higher = sorted(s for s in defect.tolist() if s > metrics[THRESHOLD_METRIC])[0]
    assert float((defect < higher).double().mean()) > target
    # overkill: good images whose P(defect) is at or above the threshold
    assert metrics[OVERKILL_METRIC] == pytest.approx(overkill)


def test_calibration_ties_at_the_threshold_count_as_defects():
    scores = torch.tensor([0.4, 0.4, 0.4, 0.9], dtype=torch.float64)
    # 25% may be missed, but the lowest scores tie: thresholding at 0.4 misses none, 0.9 would miss 75%
    assert threshold_at_miss_rate(scores, 0.25) == pytest.approx(0.4)


def test_calibration_without_defect_or_good_images_is_nan():
    probs = probs_from_defect_scores([0.2, 0.3], [1, 1])
    # no defect image: no threshold can be calibrated
    only_good = calibration_metrics(probs, torch.tensor([GOOD, GOOD]), GOOD, 0.1)
    assert math.isnan(only_good[THRESHOLD_METRIC]) and math.isnan(only_good[OVERKILL_METRIC])
    # no good image: a threshold, but no overkill rate
    only_defect = calibration_metrics(probs, torch.tensor([1, 2]), GOOD, 0.0)
    assert only_defect[THRESHOLD_METRIC] == pytest.approx(0.2) and math.isnan(only_defect[OVERKILL_METRIC])


def test_classification_reports_calibration_metrics_only_when_a_target_is_set():
    task = get_task("classification")
    plain = TrainConfig.model_validate({"data": {"synthetic": {"count": 16}}})
    target = TrainConfig.model_validate({"data": {"synthetic": {"count": 16}}, "eval": {"target_miss_rate": 0.05}})
    # no target: no calibration metrics; a target: both, under val/
    assert not {f"val/{OVERKILL_METRIC}", f"val/{THRESHOLD_METRIC}"} & set(task.metric_names(plain))
    assert {f"val/{OVERKILL_METRIC}", f"val/{THRESHOLD_METRIC}"} <= set(task.metric_names(target))


def test_classification_target_miss_rate_needs_a_good_class():
    cfg = TrainConfig.model_validate(
        {"data": {"synthetic": {"count": 16, "classes": ["ok", "scratch"]}}, "eval": {"target_miss_rate": 0.05}}
    )
    # calibration thresholds P(defect) = 1 - P(good): without the good class it is a config error
    with pytest.raises(ConfigError) as caught:
        get_task("classification").check(cfg)
    assert caught.value.key == "eval.target_miss_rate"


def test_classification_evaluate_reports_the_calibrated_threshold():
    from training.loop.fit import fit

    cfg = TrainConfig.model_validate(
        {
            "data": {"image_size": 32, "batch_size": 16, "synthetic": {"count": 40, "seed": 0}},
            "model": {"name": "resnet10t"},
            "train": {"epochs": 1, "device": "cpu"},
            "eval": {"target_miss_rate": 0.1},
        }
    )
    metrics = fit(cfg)
    # one epoch of real training reports a threshold in [0, 1] and an overkill rate in [0, 1]
    assert 0.0 <= metrics[f"val/{THRESHOLD_METRIC}"] <= 1.0
    assert 0.0 <= metrics[f"val/{OVERKILL_METRIC}"] <= 1.0
