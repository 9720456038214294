"""Stratified splits: a share split off (test hold-out, train/val) and k folds, single- and multi-label."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.multilabel_split import iterative_sides
from training.data.samples import ImageSet
from training.data.split import fold_indices, fold_split, split_off, stratified_split

# class 0: 20 images, class 1: 9, class 2: 4, class 3: 2, class 4: 1
SINGLE = np.repeat(np.arange(5), [20, 9, 4, 2, 1])


def multi_labels(n: int = 120, seed: int = 0) -> np.ndarray:
    """(n, 4) 0/1 labels, class frequencies 0.4 down to 0.03; some rows clean."""
    return (np.random.default_rng(seed).random((n, 4)) < [0.4, 0.2, 0.08, 0.03]).astype(np.uint8)


def _images(labels: np.ndarray) -> ImageSet:
    return ImageSet(images=[f"{i}.png" for i in range(len(labels))], labels=labels)


def _names(images: ImageSet) -> set[str]:
    return set(images.images)


@pytest.mark.parametrize("labels", [SINGLE, multi_labels()], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("seed", range(3))
def test_split_off_puts_every_image_on_one_side_and_every_class_on_both(labels, seed):
    images = _images(labels)
    rest, held = split_off(images, 0.2, seed)
    # every image lands on exactly one side
    assert _names(rest) | _names(held) == _names(images) and not _names(rest) & _names(held)
    # about the share is split off
    assert abs(len(held) - 0.2 * len(images)) <= 3
    counts = labels.sum(axis=0) if labels.ndim == 2 else np.bincount(labels)
    for cls in np.flatnonzero(counts >= 2):
        in_rest = rest.labels[:, cls].any() if labels.ndim == 2 else cls in rest.labels
        in_held = held.labels[:, cls].any() if labels.ndim == 2 else cls in held.labels
        # a class with 2+ images is on both sides: it can be trained on and scored
        assert in_rest and in_held, f"class {cls}"


def test_split_off_of_single_labels_is_the_stratified_train_val_split():
    images = _images(SINGLE)
    # one rule for every two-way split of single-label images: the train/val split's
    for a, b in zip(split_off(images, 0.25, 3), stratified_split(images, 0.25, 3)):
        assert a.images == b.images


@pytest.mark.parametrize("labels", [SINGLE, multi_labels()], ids=["single-label", "multi-label"])
def test_split_off_is_deterministic_by_seed(labels):
    images = _images(labels)
    first = split_off(images, 0.3, 7)
    # the same seed gives the same split; another seed a different one
    assert [p.images for p in first] == [p.images for p in split_off(images, 0.3, 7)]
    assert first[1].images != split_off(images, 0.3, 8)[1].images


def test_fold_indices_spread_each_single_label_class_evenly():
    folds = fold_indices(SINGLE, 4, seed=1)
    # every image is in one fold of 0..3
    assert set(folds.tolist()) == {0, 1, 2, 3} and len(folds) == len(SINGLE)
    for cls in range(5):
        per_fold = np.bincount(folds[SINGLE == cls], minlength=4)
        # a class's images are spread as evenly as its count allows (a class of 2 misses 2 folds)
        assert per_fold.max() - per_fold.min() <= 1, (cls, per_fold)
    # and the folds' sizes differ by at most one image
    sizes = np.bincount(folds, minlength=4)
    assert sizes.max() - sizes.min() <= 1


def test_fold_indices_spread_each_multi_label_class_over_the_folds():
    labels = multi_labels(200, seed=2)
    folds = fold_indices(labels, 5, seed=0)
    sizes = np.bincount(folds, minlength=5)
    # iterative stratification: the folds get about equal shares of the images ...
    assert sizes.max() - sizes.min() <= 2, sizes
    for cls in range(labels.shape[1]):
        per_fold = np.bincount(folds[labels[:, cls] == 1], minlength=5)
        # ... and of each class's images; a class with at least one image per fold is in every fold
        assert per_fold.max() - per_fold.min() <= 2, (cls, per_fold)
        assert per_fold.min() >= 1 or per_fold.sum() < 5


@pytest.mark.parametrize("labels", [SINGLE, multi_labels()], ids=["single-label", "multi-label"])
def test_fold_split_folds_partition_the_images(labels):
    images = _images(labels)
    splits = [fold_split(images, 3, fold, seed=4) for fold in range(3)]
    vals = [_names(val) for _, val in splits]
    # the validation folds are pairwise disjoint and together are every image
    assert set().union(*vals) == _names(images) and sum(map(len, vals)) == len(images)
    for (train, val), fold in zip(splits, vals):
        # fold i trains on every image outside fold i
        assert _names(train) == _names(images) - fold and _names(val) == fold
    # the same seed gives the same folds; another seed other ones
    assert fold_split(images, 3, 0, seed=4)[1].images == splits[0][1].images
    assert not np.array_equal(fold_indices(labels, 3, 4), fold_indices(labels, 3, 5))


def test_iterative_sides_keep_each_share():
    labels = multi_labels(400, seed=3)
    side = iterative_sides(labels, [0.5, 0.3, 0.2], seed=0)
    # each side gets its share of the images and of each class (iterative stratification's goal)
    assert np.abs(np.bincount(side, minlength=3) - [200, 120, 80]).max() <= 2
    common = labels.sum(axis=0) >= 20
    for s, share in enumerate([0.5, 0.3, 0.2]):
        got = labels[side == s][:, common].sum(axis=0) / labels[:, common].sum(axis=0)
        assert np.all(np.abs(got - share) < 0.05), (s, got)
    # a class with at least one image per side (here 3) is on every side
    assert all(labels[side == s].any(axis=0).all() for s in range(3))
