"""Seeded stratified splits: a share split off (the test hold-out, train/val) and k folds.

Single-label images (one class index each) are stratified class by class; multi-label images (an
(n, classes) 0/1 array) by iterative stratification (`training.data.multilabel_split`).
`_stratifiers` is the one place that tells the two apart. `class_sides` also draws which images keep
their labels in semi-supervised detection (`training.detection.semi.split_labeled`, its own count rule).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from training.data.multilabel_split import iterative_sides
from training.data.samples import ImageSet

# (labels, share, seed) -> side of each image: 1 = in the share split off, 0 = the rest
TwoWay = Callable[[np.ndarray, float, int], np.ndarray]
# (labels, folds, seed) -> fold of each image
KWay = Callable[[np.ndarray, int, int], np.ndarray]


def stratified_split(images: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, val) of single-label images; every class with 2+ images lands on both sides."""
    side = class_sides(images.labels, val_fraction, seed)
    return images.subset(np.flatnonzero(side == 0)), images.subset(np.flatnonzero(side == 1))


def split_off(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(the rest, `fraction` of the images), stratified and seeded; a class with 2+ images (multi-label:
    a class on 2+ images) lands on both sides."""
    two_way, _ = _stratifiers(images.labels)
    side = two_way(images.labels, fraction, seed)
    return images.subset(np.flatnonzero(side == 0)), images.subset(np.flatnonzero(side == 1))


def fold_split(images: ImageSet, folds: int, fold: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, val) of fold `fold` of `folds` stratified folds: fold `fold` validates, the others train."""
    in_fold = fold_indices(images.labels, folds, seed) == fold
    return images.subset(np.flatnonzero(~in_fold)), images.subset(np.flatnonzero(in_fold))


def fold_indices(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0 to folds - 1) of each image: every image in one fold, each class spread over the
    folds as evenly as its count allows (a class with fewer images than folds misses some)."""
    labels = np.asarray(labels)
    _, k_way = _stratifiers(labels)
    return k_way(labels, folds, seed)


def _stratifiers(labels: np.ndarray) -> tuple[TwoWay, KWay]:
    return (_iterative_two_way, _iterative_folds) if labels.ndim == 2 else (class_sides, _dealt_folds)


def _iterative_two_way(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    return iterative_sides(labels, [1.0 - share, share], seed)


def _iterative_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    return iterative_sides(labels, [1.0 / folds] * folds, seed)


def on_both_sides(count: int, share: float) -> int:
    """round(share * count), at least 1 and all but 1 for 2+ images: the class lands on both sides."""
    held = int(round(count * share))
    return min(max(held, 1), count - 1) if count > 1 else 0


def class_sides(
    labels: np.ndarray, share: float, seed: int, held: Callable[[int, float], int] = on_both_sides
) -> np.ndarray:
    """Each class's `held(count, share)` images on side 1, drawn by one seeded permutation per class,
    classes in label order."""
    rng = np.random.default_rng(seed)
    side = np.zeros(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        side[members[: held(len(members), share)]] = 1
    return side


def _dealt_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each class's images, shuffled, dealt to the folds in turn; the next class goes on where the
    last one stopped, so that the folds' sizes also differ by at most one."""
    rng = np.random.default_rng(seed)
    classes = [rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)]
    order = np.concatenate([np.empty(0, np.int64), *classes])
    fold = np.empty(len(labels), np.int64)
    fold[order] = np.arange(len(order)) % folds
    return fold
