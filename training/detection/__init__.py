"""Detection building blocks shared by the detection tasks: labels, data, augmentation, models,
per-stage losses and metrics."""

from training.detection.augment import detection_transform
from training.detection.dataset import DetectionDataset, LabelMap, collate
from training.losses.detection import StageLoss
from training.metrics.detection import detection_metrics
from training.detection.models import check_detector, create_detector

__all__ = [
    "DetectionDataset",
    "LabelMap",
    "StageLoss",
    "check_detector",
    "collate",
    "create_detector",
    "detection_metrics",
    "detection_transform",
]
