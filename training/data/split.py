"""A seeded stratified train/val split that keeps every class with 2+ images on both sides."""

from __future__ import annotations

import numpy as np

from training.data.samples import ImageSet


def stratified_split(images: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in np.unique(images.labels):
        members = rng.permutation(np.flatnonzero(images.labels == label))
        n_val = int(round(len(members) * val_fraction))
        n_val = min(max(n_val, 1), len(members) - 1) if len(members) > 1 else 0
        val_idx.extend(members[:n_val])
        train_idx.extend(members[n_val:])
    return images.subset(np.sort(train_idx)), images.subset(np.sort(val_idx))
