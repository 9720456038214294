"""Multi-label synthetic defect images (`data.kind: synthetic_multilabel`): the surfaces and defect
drawers of `training.data.synthetic`, with any subset of the defect classes on one image.

- The classes are `data.synthetic.classes` without `good`: a clean image is one with no class.
- `good_fraction` of the images are clean; a defective image carries 1, 2 or 3 classes (mostly 1, as
  on Severstal's steel), drawn with weights that decay geometrically from the first class to
  `imbalance` times that for the last. The first defective images carry every class twice, so no
  class is missing from a small set.
- Each class on an image gets 1 or 2 defects, each drawn in a random square window of the image, so
  the square-image drawers spread defects along a long strip.
- A wide image (`data.image_width` > `image_size`) is a square surface stretched to the width: cheap,
  and the stretched grain looks like rolled steel.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from training.config import SyntheticData
from training.data.samples import ImageSet
from training.data.synthetic import (
    _CHUNK_PIXELS,
    Drawer,
    _add_faint_marks,
    _drawer,
    _look,
    _Look,
    _surfaces,
    good_index,
)

_CLASSES_PER_IMAGE = (0.7, 0.22, 0.08)
_DEFECTS_PER_CLASS = (0.7, 0.3)


def defect_classes(cfg: SyntheticData) -> list[str]:
    """The class names of the multi-label set: every configured class but `good`."""
    good = good_index(cfg.classes)
    return [name for i, name in enumerate(cfg.classes) if i != good]


def generate(cfg: SyntheticData, shape: tuple[int, int]) -> ImageSet:
    """Images of (height, width) and their (n, classes) uint8 0/1 labels; cached like `synthetic.generate`
    (shared read-only arrays: copy one before editing it)."""
    cached = _generate_cached(cfg.model_dump_json(), *shape)
    return ImageSet(list(cached.images), cached.labels)


@functools.lru_cache(maxsize=4)
def _generate_cached(cfg_json: str, height: int, width: int) -> ImageSet:
    cfg = SyntheticData.model_validate_json(cfg_json)
    rng = np.random.default_rng(cfg.seed % 2**64)  # negative seeds are valid config values
    good = good_index(cfg.classes)
    drawers = [_drawer(cfg.classes, i) for i in range(len(cfg.classes)) if i != good]
    labels = _labels(rng, cfg, len(drawers))
    look = _look(cfg.difficulty, min(height, width))
    pixels = np.empty((len(labels), height, width, 3), np.uint8)
    step = max(1, _CHUNK_PIXELS // height**2)
    for start in range(0, len(labels), step):
        for offset, surface in enumerate(_surfaces(rng, min(step, len(labels) - start), height, look)):
            image = cv2.resize(surface, (width, height), interpolation=cv2.INTER_LINEAR) if width != height else surface
            _draw_classes(image, rng, look, [drawers[c] for c in np.flatnonzero(labels[start + offset])])
            np.clip(image + 0.5, 0, 255, out=pixels[start + offset], casting="unsafe")
    for array in (pixels, labels):
        array.setflags(write=False)
    return ImageSet(list(pixels), labels)


def _labels(rng: np.random.Generator, cfg: SyntheticData, n_classes: int) -> np.ndarray:
    """(count, classes) uint8 0/1: `good_fraction` clean rows, the rest with 1 to 3 classes."""
    labels = np.zeros((cfg.count, n_classes), np.uint8)
    n_clean = min(round(cfg.good_fraction * cfg.count), cfg.count - 1)
    defective = rng.permutation(cfg.count)[n_clean:]
    weights = cfg.imbalance ** (np.arange(n_classes) / max(n_classes - 1, 1))
    sizes = np.minimum(rng.choice(len(_CLASSES_PER_IMAGE), len(defective), p=_CLASSES_PER_IMAGE) + 1, n_classes)
    for rank, (row, size) in enumerate(zip(defective, sizes)):
        labels[row, rng.choice(n_classes, size, replace=False, p=weights / weights.sum())] = 1
        if rank < 2 * n_classes:
            labels[row, rank % n_classes] = 1
    return labels


def _draw_classes(image: np.ndarray, rng: np.random.Generator, look: _Look, drawers: list[Drawer]) -> None:
    """Faint marks along the whole image, then each class's defects, each in a random square window."""
    side = min(image.shape[:2])
    for _ in range(max(1, round(max(image.shape[:2]) / side))):
        _add_faint_marks(_window(image, side, rng), rng, look)
    for drawer in drawers:
        for _ in range(rng.choice(len(_DEFECTS_PER_CLASS), p=_DEFECTS_PER_CLASS) + 1):
            drawer(_window(image, side, rng), rng, look)


def _window(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A random side x side view of `image` (drawing into it draws into the image)."""
    y0 = int(rng.integers(0, image.shape[0] - side + 1))
    x0 = int(rng.integers(0, image.shape[1] - side + 1))
    return image[y0 : y0 + side, x0 : x0 + side]
