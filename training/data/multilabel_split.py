"""A seeded train/val split of multi-label images by iterative stratification (Sechidis et al. 2011).

Each side wants its share of the images and of every class's images. The rarest class still to
place goes first: each of its images joins the side that wants that class most (ties: the side that
wants more images, then the seeded generator), and the side's wants drop by every class the image
carries. Images with no class fill the sides' remaining wants last. A class with 2+ images wants at
least one on each side, and a last pass moves one image where a class still ended up on one side only.
"""

from __future__ import annotations

import numpy as np

from training.data.samples import ImageSet

TRAIN, VAL = 0, 1


def multilabel_split(images: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, val) of an ImageSet whose labels are an (n, classes) 0/1 array."""
    train_idx, val_idx = iterative_split(images.labels, val_fraction, seed)
    return images.subset(train_idx), images.subset(val_idx)


def iterative_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train indices, val indices) of an (n, classes) 0/1 label array."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    shares = np.array([1.0 - val_fraction, val_fraction])
    wanted = len(labels) * shares
    counts = labels.sum(axis=0)
    wanted_per_class = counts * shares[:, None]
    wanted_per_class[:, counts >= 2] = np.maximum(wanted_per_class[:, counts >= 2], 1.0)
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
    _put_every_class_on_both_sides(labels, side)
    return np.flatnonzero(side == TRAIN), np.flatnonzero(side == VAL)


def _choose(wanted_for_class: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> int:
    """The side wanting the class most; ties go to the side wanting more images, then to chance."""
    best = np.flatnonzero(wanted_for_class == wanted_for_class.max())
    best = best[wanted[best] == wanted[best].max()]
    return int(best[0] if len(best) == 1 else rng.choice(best))


def _put_every_class_on_both_sides(labels: np.ndarray, side: np.ndarray) -> None:
    """Move one image per class with 2+ images that sits on one side only, if a move takes no
    other class off the side it leaves (an image with the fewest classes first)."""
    for cls in np.argsort(labels.sum(axis=0), kind="stable"):
        members = labels[:, cls]
        if members.sum() < 2:
            continue
        for target in (TRAIN, VAL):
            if (members & (side == target)).any():
                continue
            left_behind = labels[side != target].sum(axis=0)
            movable = [i for i in np.flatnonzero(members) if (left_behind[labels[i]] >= 2).all()]
            if movable:
                side[min(movable, key=lambda i: labels[i].sum())] = target
