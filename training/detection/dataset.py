"""Detection samples over an ImageSet: (uint8 CHW tensor, {boxes, labels}), their collate, and the
detection tasks' batches: a DataLoader, or `DeviceBatches` over images cached on the device."""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training.config import DataConfig
from training.data.dataset import Key, read_image, reseed, split_key, to_chw
from training.data.loading import DeviceBatches, batch_order, make_loader
from training.data.samples import ImageSet
from training.loop.runtime import Runtime

Target = dict[str, torch.Tensor]


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
    return read_image(item, None)


class DetectionDataset(Dataset):
    """(uint8 CHW tensor, {"boxes": float32 (k, 4) xyxy, "labels": int64 (k,)}) at the transform's size."""

    def __init__(self, images: ImageSet, labels: LabelMap, transform: A.Compose):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, Target]:
        index, seed = split_key(key)
        reseed(self.transform, seed)
        out = self.transform(
            image=read_rgb(self.images.images[index]),
            bboxes=self.images.boxes[index].reshape(-1, 4),
            labels=self.labels.to_detector(self.images.box_labels[index]),
        )
        boxes = torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4))
        return to_chw(out["image"]), {"boxes": boxes, "labels": torch.as_tensor(np.asarray(out["labels"], dtype=np.int64))}


def collate(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images stacked (all share the dataset's size); targets kept as a list (box counts differ)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


def detection_loader(
    dataset: DetectionDataset,
    data: DataConfig,
    runtime: Runtime,
    shuffle: bool,
    generator: torch.Generator,
    images: torch.Tensor | None = None,
) -> DataLoader | DeviceBatches:
    """The batches of `dataset`: from a DataLoader, or, given its `images` cached on the device as one
    uint8 NCHW tensor (already at the data's size), drawn there by index with its boxes."""
    if images is None:
        return make_loader(dataset, data, runtime, shuffle, generator, collate_fn=collate)
    device = images.device
    targets = [
        {"boxes": torch.as_tensor(b.reshape(-1, 4), dtype=torch.float32, device=device),
         "labels": torch.as_tensor(dataset.labels.to_detector(c), device=device)}
        for b, c in zip(dataset.images.boxes, dataset.images.box_labels)
    ]  # fmt: skip
    order = batch_order(dataset, data, shuffle, generator)
    return DeviceBatches(dataset, order, lambda i, listed: (images[i], [targets[j] for j in listed]), device)
