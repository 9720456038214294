"""Detection samples over an ImageSet: (uint8 CHW tensor, {boxes, labels}) and their collate."""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.samples import ImageSet


@dataclass(frozen=True)
class LabelMap:
    """Dataset class indices <-> detector labels: the good class has no boxes, so the defect classes
    become labels 1..K and 0 stays the detector's background."""

    class_names: list[str]
    good_class: str

    @property
    def defect_names(self) -> list[str]:
        """Defect class names; detector label l is defect_names[l - 1]."""
        return [n for n in self.class_names if n != self.good_class]

    @property
    def num_classes(self) -> int:
        """Detector outputs: the defect classes and the background."""
        return len(self.defect_names) + 1

    def to_detector(self, class_indices: np.ndarray) -> np.ndarray:
        lookup = {self.class_names.index(n): label for label, n in enumerate(self.defect_names, start=1)}
        return np.array([lookup[int(c)] for c in class_indices], dtype=np.int64)


def read_rgb(item: np.ndarray | str) -> np.ndarray:
    """uint8 RGB HxWx3 at its original size (boxes are in its pixels) from an array or a file."""
    if not isinstance(item, str):
        return item
    image = cv2.imread(item, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {item}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class DetectionDataset(Dataset):
    """(uint8 CHW tensor, {"boxes": float32 (k, 4) xyxy, "labels": int64 (k,)}) at the transform's size."""

    def __init__(self, images: ImageSet, labels: LabelMap, transform: A.Compose):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.transform(
            image=read_rgb(self.images.images[index]),
            bboxes=self.images.boxes[index].reshape(-1, 4),
            labels=self.labels.to_detector(self.images.box_labels[index]),
        )
        image = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))
        return image, {"boxes": boxes, "labels": torch.as_tensor(np.asarray(out["labels"], dtype=np.int64))}


def collate(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images stacked (all share the dataset's size); targets kept as a list (box counts differ)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
