"""Seeded splits of multi-label images into k sides by iterative stratification (Sechidis et al. 2011).

Each side wants its share of the images and of every class's images. The rarest class still to
place goes first: each of its images joins the side that wants that class most (ties: the side that
wants more images, then the seeded generator), and the side's wants drop by every class the image
carries. Images with no class fill the sides' remaining wants last. A class with at least one image
per side wants one on each side, and a last pass moves one image where such a class still misses a
side. Two sides with shares [1 - v, v] are a train/val split; k equal shares are k folds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.data.samples import ImageSet


def multilabel_split(images: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, val) of an ImageSet whose labels are an (n, classes) 0/1 array."""
    train_idx, val_idx = iterative_split(images.labels, val_fraction, seed)
    return images.subset(train_idx), images.subset(val_idx)


def iterative_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train indices, val indices) of an (n, classes) 0/1 label array."""
    side = iterative_sides(labels, [1.0 - val_fraction, val_fraction], seed)
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def iterative_sides(labels: np.ndarray, shares: Sequence[float], seed: int) -> np.ndarray:
    """The side (index into `shares`, which sum to 1) of each row of an (n, classes) 0/1 label array."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    shares = np.asarray(shares, float)
    wanted = len(labels) * shares
    counts = labels.sum(axis=0)
    wanted_per_class = counts * shares[:, None]
    spread = counts >= len(shares)
    wanted_per_class[:, spread] = np.maximum(wanted_per_class[:, spread], 1.0)
    side = np.full(len(labels), -1)
    order = rng.permutation(len(labels))  # the seeded visiting order breaks ties between images
    unplaced = labels.copy()
    while unplaced.any():
        left = unplaced.sum(axis=0).astype(float)
        left[left == 0] = np.inf
        rarest = int(np.argmin(left))
        for i in order[unplaced[order, rarest]]:
            side[i] = _choose(wanted_per_class[:, rarest], wanted, rng)
            wanted_per_class[side[i]] -= labels[i]
            wanted[side[i]] -= 1
            unplaced[i] = False
    for i in order[side[order] < 0]:
        side[i] = _choose(wanted, wanted, rng)
        wanted[side[i]] -= 1
    _put_every_class_on_every_side(labels, side, len(shares))
    return side


def _choose(wanted_for_class: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> int:
    """The side wanting the class most; ties go to the side wanting more images, then to chance."""
    best = np.flatnonzero(wanted_for_class == wanted_for_class.max())
    best = best[wanted[best] == wanted[best].max()]
    return int(best[0] if len(best) == 1 else rng.choice(best))


def _put_every_class_on_every_side(labels: np.ndarray, side: np.ndarray, sides: int) -> None:
    """Move one image to each side missing a class with at least one image per side, if the move
    takes no class off the side it leaves (an image with the fewest classes first)."""
    for cls in np.argsort(labels.sum(axis=0), kind="stable"):
        members = labels[:, cls]
        if members.sum() < sides:
            continue
        for target in range(sides):
            if (members & (side == target)).any():
                continue
            per_side = np.stack([labels[side == s].sum(axis=0) for s in range(sides)])
            movable = [i for i in np.flatnonzero(members) if (per_side[side[i]][labels[i]] >= 2).all()]
            if movable:
                side[min(movable, key=lambda i: labels[i].sum())] = target
