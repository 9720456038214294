"""Metrics: miss and overkill rates from a confusion matrix, and the classification metric dict."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.metrics.classification import classification_metrics, inspection_rates
from training.schema.metric_names import classification_metric_names

# rows = truth, columns = prediction; good at index 0
CONFUSION = torch.tensor(
    [
        [8, 1, 1],  # 10 good: 8 kept, 2 rejected as a defect (overkill)
        [2, 5, 1],  # 8 scratches: 2 shipped as good (missed), 1 called rust (still rejected)
        [1, 0, 4],  # 5 rust: 1 shipped as good (missed)
    ]
)


def test_inspection_rates_on_hand_made_confusion_matrix():
    miss, overkill = inspection_rates(CONFUSION, good_index=0)
    # miss rate = defects predicted good / all defects = (2 + 1) / (8 + 5)
    assert miss == pytest.approx(3 / 13)
    # overkill rate = good predicted as any defect / all good = (1 + 1) / 10
    assert overkill == pytest.approx(2 / 10)


def test_inspection_rates_good_class_at_another_index():
    # the same counts with the classes reordered to (scratch, good, rust)
    order = [1, 0, 2]
    reordered = CONFUSION[order][:, order]
    miss, overkill = inspection_rates(reordered, good_index=1)
    # the rates depend on which class is good, not on where it sits
    assert (miss, overkill) == pytest.approx((3 / 13, 2 / 10))


def test_inspection_rates_defect_confused_with_other_defect_is_neither_miss_nor_overkill():
    confusion = torch.tensor([[4, 0, 0], [0, 0, 3], [0, 2, 0]])
    # every defect was rejected (just under the wrong defect name) and every good part kept
    assert inspection_rates(confusion, good_index=0) == (0.0, 0.0)


def test_inspection_rates_nan_miss_rate_without_defects():
    confusion = torch.tensor([[5, 1, 0], [0, 0, 0], [0, 0, 0]])
    miss, overkill = inspection_rates(confusion, good_index=0)
    # no defect images: the miss rate is undefined (NaN), not 0
    assert math.isnan(miss)
    # the overkill rate is still defined: 1 of 6 good images rejected
    assert overkill == pytest.approx(1 / 6)


def test_inspection_rates_nan_overkill_rate_without_good_images():
    confusion = torch.tensor([[0, 0, 0], [1, 3, 0], [0, 0, 4]])
    miss, overkill = inspection_rates(confusion, good_index=0)
    # no good images: the overkill rate is undefined (NaN), not 0
    assert math.isnan(overkill)
    # the miss rate is still defined: 1 of 8 defects shipped
    assert miss == pytest.approx(1 / 8)


def _perfect_logits(targets: torch.Tensor, n: int) -> torch.Tensor:
    return F.one_hot(targets, n).float() * 10


def test_classification_metrics_perfect_predictions():
    names = ["good", "scratch", "rust"]
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    metrics = classification_metrics(_perfect_logits(targets, 3), targets, names, "good")
    # every prediction right: accuracy 1
    assert metrics["accuracy"] == pytest.approx(1.0)
    # every class perfectly separated: macro F1 1
    assert metrics["macro_f1"] == pytest.approx(1.0)
    # every class ranked above the rest: macro AUROC 1
    assert metrics["auroc"] == pytest.approx(1.0)
    # no defect shipped as good: miss rate 0
    assert metrics["miss_rate"] == 0.0
    # no good part rejected: overkill rate 0
    assert metrics["overkill_rate"] == 0.0


def test_classification_metrics_hand_made_mistakes():
    names = ["good", "scratch"]
    targets = torch.tensor([0, 0, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0])  # one overkill, one miss
    metrics = classification_metrics(_perfect_logits(predicted, 2), targets, names, "good")
    # accuracy = right / all = 4 / 6
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # F1(good): tp 3, fp 1, fn 1 -> 2*3 / (2*3 + 1 + 1) = 0.75
    assert metrics["f1/good"] == pytest.approx(0.75)
    # F1(scratch): tp 1, fp 1, fn 1 -> 2*1 / (2*1 + 1 + 1) = 0.5
    assert metrics["f1/scratch"] == pytest.approx(0.5)
    # macro F1 is the unweighted mean of the per-class F1s
    assert metrics["macro_f1"] == pytest.approx((0.75 + 0.5) / 2)
    # miss rate = 1 of 2 defects called good
    assert metrics["miss_rate"] == pytest.approx(1 / 2)
    # overkill rate = 1 of 4 good called a defect
    assert metrics["overkill_rate"] == pytest.approx(1 / 4)


def test_classification_metrics_per_class_f1_keys():
    names = ["good", "scratch", "rust"]
    targets = torch.tensor([0, 1, 2, 0])
    metrics = classification_metrics(_perfect_logits(targets, 3), targets, names, "good")
    # one `f1/<class>` entry per class name, nothing else under f1/
    assert {k for k in metrics if k.startswith("f1/")} == {"f1/good", "f1/scratch", "f1/rust"}


def test_classification_metrics_without_good_class_has_no_inspection_rates():
    names = ["scratch", "rust"]
    targets = torch.tensor([0, 1, 1, 0])
    metrics = classification_metrics(_perfect_logits(targets, 2), targets, names, "good")
    # miss and overkill rates need a good class: absent, they are not reported at all
    assert "miss_rate" not in metrics and "overkill_rate" not in metrics


@pytest.mark.parametrize(
    ("names", "good"),
    [
        (["good", "scratch", "rust"], "good"),
        (["scratch", "ok", "rust"], "ok"),
        (["scratch", "rust"], "good"),
    ],
)
def test_classification_metric_names_equal_returned_keys(names, good):
    targets = torch.arange(len(names)).repeat(2)
    metrics = classification_metrics(_perfect_logits(targets, len(names)), targets, names, good)
    # the advertised names are exactly the keys computed, so loggers and searches agree
    assert classification_metric_names(names, good) == list(metrics)


def test_classification_metrics_auroc_ignores_classes_absent_from_targets():
    logits = torch.tensor([[5.0, 0.0, 0.0], [4.0, 1.0, 0.0], [0.0, 5.0, 0.0], [1.0, 4.0, 0.0]])
    targets = torch.tensor([0, 0, 1, 1])
    metrics = classification_metrics(logits, targets, ["good", "scratch", "rust"], "good")
    # perfect ranking of the two present classes is AUROC 1, not dragged down by the absent 'rust'
    assert metrics["auroc"] == pytest.approx(1.0)
