"""Iterative multi-label stratification: every image once, each class on both sides, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.multilabel_split import iterative_split, multilabel_split
from training.data.samples import ImageSet


def random_labels(n: int, frequencies: list[float], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, len(frequencies))) < frequencies).astype(np.uint8)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n, frequencies", [(40, [0.4, 0.1, 0.05, 0.03]), (200, [0.3, 0.2, 0.02, 0.01])])
def test_every_class_with_two_images_is_on_both_sides(n, frequencies, seed):
    labels = random_labels(n, frequencies, seed)
    train, val = iterative_split(labels, 0.25, seed)
    for cls in np.flatnonzero(labels.sum(axis=0) >= 2):
        # a class with 2+ images can be both trained on and validated
        assert labels[train, cls].any() and labels[val, cls].any(), f"class {cls} on one side only"


def test_split_places_every_image_exactly_once_near_the_val_fraction():
    labels = random_labels(400, [0.3, 0.15, 0.05, 0.02], seed=1)
    train, val = iterative_split(labels, 0.25, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(400))
    # the sides get their share of the images and of each class (iterative stratification's goal)
    assert abs(len(val) - 100) <= 1
    share = labels[val].sum(axis=0) / labels.sum(axis=0)
    assert np.all(np.abs(share - 0.25) < 0.05), share


def test_split_is_deterministic_by_seed():
    labels = random_labels(100, [0.3, 0.2, 0.1], seed=2)
    first = iterative_split(labels, 0.3, seed=7)
    # the same seed gives the same split; another seed a different one
    assert all(np.array_equal(a, b) for a, b in zip(first, iterative_split(labels, 0.3, seed=7)))
    assert not np.array_equal(first[1], iterative_split(labels, 0.3, seed=8)[1])


def test_multilabel_split_subsets_images_with_their_label_rows():
    labels = random_labels(30, [0.5, 0.3], seed=3)
    images = ImageSet(images=[f"{i}.png" for i in range(30)], labels=labels)
    train, val = multilabel_split(images, 0.25, seed=0)
    # ImageSet.subset keeps each image with its own (classes,) label row
    for part in (train, val):
        rows = [int(name.split(".")[0]) for name in part.images]
        assert np.array_equal(part.labels, labels[rows])
    assert len(train) + len(val) == 30
