"""Box statistics of detection data, the priors behind anchor choices: aspect ratios (h/w) per
class, box sizes, how well the anchors cover the boxes, and a suggested anchor-ratio search range.

Everything is measured after the resize to `data.image_size` x `data.image_size` that the detector
sees (a non-square image changes its boxes' h/w), in numpy, without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data.samples import ImageSet, Splits

# upper edges of the h/w histogram bins (the last bin takes the rest): log-spaced, symmetric around 1
RATIO_EDGES = (0.2, 0.3, 0.45, 0.7, 1 / 0.7, 1 / 0.45, 1 / 0.3, 1 / 0.2)
# a box whose best anchor IoU is below this gets no positive anchor (RetinaNet's and ATSS's rule)
MATCH_IOU = 0.5
# neighbouring ratios of a suggested set differ by at most this factor: a box halfway between two of
# them still overlaps the nearer one's shape by about 0.73 IoU
MAX_RATIO_STEP = 2.0
SIZE_PERCENTILES = (5, 25, 50, 75, 95)


@dataclass
class ClassBoxes:
    name: str
    ratios: np.ndarray  # h/w of each box
    missed: np.ndarray  # bool: best anchor IoU < MATCH_IOU

    @property
    def count(self) -> int:
        return len(self.ratios)

    @property
    def miss_share(self) -> float:
        return float(self.missed.mean()) if self.count else 0.0

    @property
    def median_ratio(self) -> float:
        return float(np.median(self.ratios)) if self.count else math.nan

    def histogram(self) -> np.ndarray:
        """Boxes per h/w bin (bins end at RATIO_EDGES, then one open-ended bin)."""
        return np.bincount(np.searchsorted(RATIO_EDGES, self.ratios, side="right"), minlength=len(RATIO_EDGES) + 1)


@dataclass
class RatioSuggestion:
    """A geometric anchor-ratio search range: first ratio, last ratio and count, each a [lo, hi]."""

    first: tuple[float, float]
    last: tuple[float, float]
    count: tuple[int, int]
    centre: list[float]  # the set from p5 to p95 with steps of at most MAX_RATIO_STEP

    def space_entry(self) -> str:
        """The space-file line searching this range (flow style: pastes under `space:`)."""
        return (
            f"model.anchor_ratios: {{geometric: {{min: [{self.first[0]:g}, {self.first[1]:g}],"
            f" max: [{self.last[0]:g}, {self.last[1]:g}], count: [{self.count[0]}, {self.count[1]}]}}}}"
        )


@dataclass
class BoxStats:
    image_size: int
    anchor_ratios: list[float]
    anchor_sizes: list[float]
    classes: list[ClassBoxes]  # defect classes with at least one box, in class order
    sizes: np.ndarray  # sqrt(box area) in resized pixels, every box

    @property
    def overall(self) -> ClassBoxes:
        """Every box of every class, as one row named `all`."""
        ratios = np.concatenate([c.ratios for c in self.classes])
        return ClassBoxes("all", ratios, np.concatenate([c.missed for c in self.classes]))

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def miss_share(self) -> float:
        return self.overall.miss_share

    def size_percentiles(self) -> dict[int, float]:
        return dict(zip(SIZE_PERCENTILES, np.percentile(self.sizes, SIZE_PERCENTILES).tolist()))

    def suggestion(self) -> RatioSuggestion:
        return suggest_ratio_range(self.overall.ratios)


def image_shape(item: np.ndarray | str) -> tuple[int, int]:
    """(height, width) of an array, or of an image file from its header (no pixels decoded)."""
    if not isinstance(item, str):
        return item.shape[:2]
    from PIL import Image

    with Image.open(item) as image:
        return image.height, image.width


def resized_boxes(images: ImageSet, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every box's (width, height) after the resize to image_size x image_size, and its class."""
    shapes, labels = [], []
    for item, boxes, box_labels in zip(images.images, images.boxes, images.box_labels):
        if len(boxes) == 0:
            continue
        height, width = image_shape(item)
        scale = np.array([image_size / width, image_size / height], np.float64)
        shapes.append((boxes[:, 2:] - boxes[:, :2]).astype(np.float64) * scale)
        labels.append(box_labels)
    if not shapes:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    return np.concatenate(shapes), np.concatenate(labels)


def anchor_shapes(ratios: list[float], sizes: list[float]) -> np.ndarray:
    """(width, height) of every anchor, as torchvision's AnchorGenerator makes them: area size^2,
    h/w = ratio, corners rounded to whole pixels around the centre."""
    ratio = np.asarray(ratios, np.float64)[None, :]
    size = np.asarray(sizes, np.float64)[:, None]
    widths = 2 * np.round(size / np.sqrt(ratio) / 2)
    heights = 2 * np.round(size * np.sqrt(ratio) / 2)
    return np.stack([widths.ravel(), heights.ravel()], axis=1)


def best_anchor_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Each box's best IoU with any anchor centred on it (shape-only IoU: the most a grid-placed
    anchor can reach, and what decides whether any anchor can match the box at all)."""
    inter = np.minimum(boxes[:, None, 0], anchors[None, :, 0]) * np.minimum(boxes[:, None, 1], anchors[None, :, 1])
    union = boxes.prod(axis=1)[:, None] + anchors.prod(axis=1)[None, :] - inter
    return (inter / union).max(axis=1)


def geometric_count(lo: float, hi: float, step: float = MAX_RATIO_STEP) -> int:
    """How many ratios from lo to hi keep neighbours within `step` of each other."""
    return max(2, math.ceil(math.log(hi / lo) / math.log(step) - 1e-9) + 1) if hi > lo else 1


def suggest_ratio_range(ratios: np.ndarray) -> RatioSuggestion:
    """First ratio in [p2, p10], last in [p90, p98], count around the p5..p95 set's; ranges widened
    a little where the data is too uniform to span any."""
    p2, p5, p10, p90, p95, p98 = np.percentile(ratios, [2, 5, 10, 90, 95, 98])
    p10, p90 = min(p10, p5 / 1.1), max(p90, p95 * 1.1)
    p2, p98 = min(p2, p10 / 1.2), max(p98, p90 * 1.2)
    count = geometric_count(p5, p95)
    centre = np.geomspace(p5, p95, count) if count > 1 else np.array([p5])
    rounded = [_round(v) for v in (p2, p10, p90, p98)]
    return RatioSuggestion(
        first=(rounded[0], rounded[1]),
        last=(rounded[2], rounded[3]),
        count=(max(2, count - 1), count + 2),
        centre=[_round(v) for v in centre],
    )


def _round(value: float) -> float:
    """Two significant digits: ratios are priors, not measurements to the third decimal."""
    return float(f"{value:.2g}")


def box_stats(splits: Splits, image_size: int, anchor_ratios: list[float], anchor_sizes: list[float]) -> BoxStats | None:
    """The statistics of every box of both splits, or None when they hold no box."""
    found = [resized_boxes(part, image_size) for part in (splits.train, splits.val)]
    shapes, labels = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    if len(shapes) == 0:
        return None
    missed = best_anchor_iou(shapes, anchor_shapes(anchor_ratios, anchor_sizes)) < MATCH_IOU
    ratios = shapes[:, 1] / shapes[:, 0]
    classes = [
        ClassBoxes(name, ratios[labels == index], missed[labels == index])
        for index, name in enumerate(splits.class_names)
        if np.any(labels == index)
    ]
    return BoxStats(image_size, list(anchor_ratios), list(anchor_sizes), classes, np.sqrt(shapes.prod(axis=1)))
