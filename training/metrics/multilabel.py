"""Multi-label metrics (torchmetrics) and per-class decision thresholds tuned on validation.

miss rate: share of defective images (any class present) with no class predicted;
overkill rate: share of clean images (no class present) with any class predicted. Both, like F1,
at the fixed 0.5 threshold; `macro_f1_tuned` uses the per-class thresholds that maximize each
class's F1 on the same validation images (so it is an optimistic estimate).
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_auroc, multilabel_f1_score

THRESHOLD = 0.5


def multilabel_metrics(probs: torch.Tensor, targets: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """F1 (macro, micro, per class), AUROC (macro over scorable classes, per class), tuned thresholds
    with the macro F1 at them, and the image-level miss and overkill rates; probs and targets (n, classes).
    Its keys: `training.schema.metric_names.multilabel_metric_names`."""
    n, targets = len(class_names), targets.int()
    f1 = multilabel_f1_score(probs, targets, n, threshold=THRESHOLD, average=None)
    auroc = per_class_auroc(probs, targets)
    thresholds = tune_thresholds(probs, targets)
    tuned = (probs >= thresholds).int()
    miss, overkill = inspection_rates(probs >= THRESHOLD, targets.bool())
    metrics = {
        "macro_f1": float(f1.mean()),
        "micro_f1": float(multilabel_f1_score(probs, targets, n, threshold=THRESHOLD, average="micro")),
        "auroc": float(auroc.nanmean()) if not auroc.isnan().all() else math.nan,
        "macro_f1_tuned": float(multilabel_f1_score(tuned, targets, n, average="macro")),
        "miss_rate": miss,
        "overkill_rate": overkill,
    }
    for name, *values in zip(class_names, f1, auroc, thresholds):
        metrics.update({f"{kind}/{name}": float(v) for kind, v in zip(("f1", "auroc", "threshold"), values)})
    return metrics


def per_class_auroc(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """AUROC of each class; NaN where validation holds only positives or only negatives of it (no
    ranking to score; torchmetrics would report 0 and drag the macro mean down)."""
    scores = [
        binary_auroc(probs[:, c], targets[:, c]) if 0 < targets[:, c].sum() < len(targets) else torch.tensor(math.nan)
        for c in range(targets.shape[1])
    ]
    return torch.stack(scores).float()


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per class, the threshold (predict the class when prob >= it) that maximizes its F1 here."""
    return torch.tensor([best_f1_threshold(probs[:, c], targets[:, c]) for c in range(targets.shape[1])])


def best_f1_threshold(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """The F1-maximizing threshold of one class: midway between the lowest score it keeps and the next
    lower one (the highest such threshold on ties). A class with no positive here keeps 0.5."""
    positives = int(truth.sum())
    if positives == 0:
        return THRESHOLD
    order = scores.argsort(descending=True)
    ranked, hits = scores[order].double(), truth[order].double()
    # keeping the top k: F1 = 2 TP / (predicted + actual positives) = 2 TP / (k + positives)
    f1 = 2 * hits.cumsum(0) / (torch.arange(1, len(ranked) + 1) + positives)
    f1[:-1][ranked[:-1] == ranked[1:]] = -1  # no cut between equal scores
    k = int(f1.argmax())
    below = float(ranked[k + 1]) if k + 1 < len(ranked) else 0.0
    return (float(ranked[k]) + below) / 2


def inspection_rates(predicted: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(miss rate, overkill rate) of (n, classes) boolean predictions against the truth, per image."""
    defective, flagged = truth.any(dim=1), predicted.any(dim=1)
    return _ratio(defective & ~flagged, defective), _ratio(~defective & flagged, ~defective)


def _ratio(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part.sum() / whole.sum()) if whole.any() else math.nan
