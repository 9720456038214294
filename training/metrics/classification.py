"""Classification metrics (torchmetrics) plus the two numbers inspection lives by.

miss rate: share of defect images predicted as the good class (defects shipped);
overkill rate: share of good images predicted as any defect (good parts rejected).
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


def inspection_rates(confusion: torch.Tensor, good_index: int) -> tuple[float, float]:
    """(miss rate, overkill rate) from a confusion matrix with rows = truth, columns = prediction."""
    confusion = confusion.double()
    defect_rows = torch.ones(confusion.shape[0], dtype=torch.bool)
    defect_rows[good_index] = False
    defects = confusion[defect_rows].sum()
    missed = confusion[defect_rows, good_index].sum()
    goods = confusion[good_index].sum()
    overkill = goods - confusion[good_index, good_index]
    return _ratio(missed, defects), _ratio(overkill, goods)


def _ratio(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part / whole) if whole > 0 else math.nan


def present_class_auroc(probs: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    """Macro one-vs-rest AUROC over the classes present in `targets`: an absent class has no AUROC
    (torchmetrics would count it as 0 and drag small validation sets down)."""
    per_class = multiclass_auroc(probs, targets, num_classes, average=None)
    present = torch.bincount(targets, minlength=num_classes) > 0
    return float(per_class[present].mean()) if present.any() else math.nan


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, class_names: list[str], good_class: str
) -> dict[str, float]:
    """Accuracy, macro F1, per-class F1, AUROC and, when a good class exists, miss/overkill rates: the
    keys of `training.schema.metric_names.classification_metric_names`."""
    n = len(class_names)
    probs = logits.float().softmax(dim=1)
    metrics = {
        "accuracy": float(multiclass_accuracy(probs, targets, n, average="micro")),
        "macro_f1": float(multiclass_f1_score(probs, targets, n, average="macro")),
        "auroc": present_class_auroc(probs, targets, n),
    }
    per_class = multiclass_f1_score(probs, targets, n, average=None)
    metrics.update({f"f1/{name}": float(v) for name, v in zip(class_names, per_class)})
    if good_class in class_names:
        confusion = multiclass_confusion_matrix(probs, targets, n)
        miss, overkill = inspection_rates(confusion, class_names.index(good_class))
        metrics.update(miss_rate=miss, overkill_rate=overkill)
    return metrics
