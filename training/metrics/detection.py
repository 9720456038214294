"""Detection metrics over a validation pass: COCO mAP (torchmetrics, pycocotools backend), per-class
AP at IoU 0.5, the image-level miss and overkill rates inspection teams track, and the box precision
and recall above a score (how good a semi-supervised teacher's pseudo labels are).

Predictions and targets are per-image dicts of CPU tensors with detector labels 1..K (label l is
`class_names[l - 1]`): targets {"boxes", "labels"}, predictions also "scores".
"""

from __future__ import annotations

import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

Detections = list[dict[str, torch.Tensor]]


def _defined(value: torch.Tensor) -> float:
    # torchmetrics says -1 where AP is undefined (no ground-truth box): reported as 0
    return max(float(value), 0.0)


def average_precision(preds: Detections, targets: Detections, num_classes: int) -> dict[str, float]:
    """mAP (IoU 0.5:0.95), mAP50 and AP50 of each label 1..num_classes."""
    coco = MeanAveragePrecision(iou_type="bbox")
    coco.update(preds, targets)
    at_50 = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], class_metrics=True)
    at_50.update(preds, targets)
    overall, per_class = coco.compute(), at_50.compute()
    found = dict(zip(per_class["classes"].reshape(-1).tolist(), per_class["map_per_class"].reshape(-1)))
    out = {"mAP50": _defined(overall["map_50"]), "mAP": _defined(overall["map"])}
    out.update({f"AP50/{label}": _defined(found.get(label, torch.tensor(-1.0))) for label in range(1, num_classes + 1)})
    return out


def found_a_defect(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor], score: float, iou: float) -> bool:
    """Whether a prediction above `score` overlaps a ground-truth box of its class at IoU >= `iou`."""
    keep = pred["scores"] > score
    boxes, labels = pred["boxes"][keep], pred["labels"][keep]
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        return False
    same_class = labels[:, None] == target["labels"][None, :]
    return bool(((box_iou(boxes, target["boxes"]) >= iou) & same_class).any())


def image_rates(preds: Detections, targets: Detections, score: float, iou: float) -> dict[str, float]:
    """miss_rate: defect images (any box) with no correct box above `score`, over defect images;
    overkill_rate: good images (no box) with any box above `score`, over good images; 0 when none."""
    defect = [len(t["boxes"]) > 0 for t in targets]
    missed = sum(d and not found_a_defect(p, t, score, iou) for p, t, d in zip(preds, targets, defect))
    flagged = sum(not d and bool((p["scores"] > score).any()) for p, d in zip(preds, defect))
    n_defect = sum(defect)
    return {
        "miss_rate": missed / n_defect if n_defect else 0.0,
        "overkill_rate": flagged / (len(defect) - n_defect) if len(defect) > n_defect else 0.0,
    }


def detection_metrics(
    preds: Detections, targets: Detections, class_names: list[str], score_threshold: float, iou_threshold: float
) -> dict[str, float]:
    """Every key of `training.schema.metric_names.detection_metric_names(class_names)`."""
    ap = average_precision(preds, targets, len(class_names))
    metrics = {"mAP50": ap["mAP50"], "mAP": ap["mAP"]}
    metrics.update({f"AP50/{name}": ap[f"AP50/{label}"] for label, name in enumerate(class_names, start=1)})
    metrics.update(image_rates(preds, targets, score_threshold, iou_threshold))
    return metrics


def box_precision_recall(preds: Detections, targets: Detections, score: float, iou: float) -> tuple[float, float]:
    """(precision, recall) of the boxes scoring above `score`: each ground-truth box is matched by at
    most one box of its class at IoU >= `iou`, the higher scores first (COCO's rule); 0 when none."""
    right = kept = truths = 0
    for pred, target in zip(preds, targets):
        above = pred["scores"] > score
        order = pred["scores"][above].argsort(descending=True)
        boxes, labels = pred["boxes"][above][order], pred["labels"][above][order]
        kept, truths = kept + len(boxes), truths + len(target["boxes"])
        if not len(boxes) or not len(target["boxes"]):
            continue
        overlaps = box_iou(boxes, target["boxes"]).masked_fill(labels[:, None] != target["labels"][None, :], 0)
        free = torch.ones(len(target["boxes"]), dtype=torch.bool)
        for row in overlaps:
            best = row.masked_fill(~free, 0).argmax()
            if row[best] >= iou and free[best]:
                free[best], right = False, right + 1
    return (right / kept if kept else 0.0), (right / truths if truths else 0.0)
