"""Box precision and recall above a score (training/metrics/detection.py), on hand-made detections."""

from __future__ import annotations

import pytest
import torch

from training.metrics.detection import box_precision_recall


def boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


TARGETS = [
    {"boxes": boxes((0, 0, 10, 10), (20, 20, 30, 30)), "labels": torch.tensor([1, 2])},
    {"boxes": boxes((0, 0, 10, 10)), "labels": torch.tensor([1])},
]
PREDS = [
    {  # right box and class; a duplicate of it; the second box with the wrong class
        "boxes": boxes((0, 0, 10, 10), (0, 0, 10, 9), (20, 20, 30, 30)),
        "labels": torch.tensor([1, 1, 1]),
        "scores": torch.tensor([0.95, 0.9, 0.6]),
    },
    {"boxes": boxes((0, 0, 10, 10)), "labels": torch.tensor([1]), "scores": torch.tensor([0.4])},  # right, low score
]


@pytest.mark.parametrize(
    ("score", "precision", "recall"),
    [
        (0.92, 1 / 1, 1 / 3),  # the best box only
        (0.5, 1 / 3, 1 / 3),  # the duplicate matches nothing twice, the wrong class nothing at all
        (0.3, 2 / 4, 2 / 3),  # the low-scoring right box counts too
        (0.99, 0.0, 0.0),  # no box above: 0, not a division by zero
    ],
)
def test_box_precision_recall_matches_each_true_box_once_by_class(score, precision, recall):
    assert box_precision_recall(PREDS, TARGETS, score, iou=0.5) == pytest.approx((precision, recall))


def test_box_precision_recall_follows_the_iou_threshold():
    shifted = [{"boxes": boxes((0, 0, 10, 14)), "labels": torch.tensor([1]), "scores": torch.tensor([0.9])}]
    truth = [{"boxes": boxes((0, 0, 10, 10)), "labels": torch.tensor([1])}]
    # IoU 100 / 140 = 0.71
    assert box_precision_recall(shifted, truth, 0.5, iou=0.7) == (1.0, 1.0)
    assert box_precision_recall(shifted, truth, 0.5, iou=0.75) == (0.0, 0.0)
