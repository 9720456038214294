"""Torch datasets over an ImageSet: read (if a path), resize, augment; uint8 out.

Normalization happens on the batch, on the device (see `training.augment.knobs.normalize_batch`): one
tensor op per batch instead of one per image, and 4x less to copy to a GPU.

A training loader asks for `(index, seed)` keys (`training.data.loading.SeededSampler`): the
augmentation of a sample is drawn from its own seed, so it is the same in any worker process.
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.samples import ImageSet

Key = int | tuple[int, int]  # an index, or (index, seed of its augmentation)


def read_image(item: np.ndarray | str, size: int | tuple[int, int] | None) -> np.ndarray:
    """uint8 RGB HxWx3 at size x size (or size = (height, width); None = as it is) from an array or
    an image file."""
    if isinstance(item, str):
        item = cv2.cvtColor(_decode(item), cv2.COLOR_BGR2RGB)
    if size is None:
        return item
    height, width = (size, size) if isinstance(size, int) else size
    if item.shape[:2] != (height, width):
        item = cv2.resize(item, (width, height), interpolation=cv2.INTER_AREA)
    return item


def _decode(path: str) -> np.ndarray:
    """BGR pixels of an image file, read through Python's `open` (unlike `cv2.imread`), so that an audit
    hook sees every image a process reads: a test proves with one that no trial reads a test image."""
    try:
        with open(path, "rb") as handle:
            data = np.frombuffer(handle.read(), np.uint8)
    except OSError as exc:
        raise FileNotFoundError(f"cannot read image {path}: {exc.strerror}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def split_key(key: Key) -> tuple[int, int | None]:
    """(index, seed of its augmentation or None)."""
    return (key[0], key[1]) if isinstance(key, tuple) else (int(key), None)


def reseed(transform: A.Compose, seed: int | None) -> None:
    """Draw the next image's augmentation from `seed` (None: go on with the transform's own stream)."""
    if seed is not None:
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class ClassificationDataset(Dataset):
    """(uint8 CHW tensor, label) pairs; `augment` runs on the uint8 HWC image."""

    def __init__(self, images: ImageSet, image_size: int | tuple[int, int], augment: A.Compose | None = None):
        self.images = images
        self.image_size = image_size
        self.augment = augment if augment is not None and augment.transforms else None

    def __len__(self) -> int:
        return len(self.images)

    def image(self, key: Key) -> tuple[torch.Tensor, int]:
        """(uint8 CHW tensor of the image, its index): resized and augmented."""
        index, seed = split_key(key)
        image = read_image(self.images.images[index], self.image_size)
        if self.augment is not None:
            reseed(self.augment, seed)
            image = self.augment(image=image)["image"]
        return to_chw(image), index

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, int]:
        image, index = self.image(key)
        return image, int(self.images.labels[index])


class MultiLabelDataset(ClassificationDataset):
    """(uint8 CHW tensor, float32 0/1 vector of classes) pairs over an ImageSet with (n, classes) labels."""

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        image, index = self.image(key)
        return image, torch.from_numpy(self.images.labels[index].astype(np.float32))
