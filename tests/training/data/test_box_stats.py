"""Tests of the box statistics behind anchor choices: resized shapes, anchor coverage, the suggestion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from torchvision.models.detection.anchor_utils import AnchorGenerator

from training.data.box_stats import (
    RATIO_EDGES,
    anchor_shapes,
    best_anchor_iou,
    box_stats,
    resized_boxes,
    suggest_ratio_range,
)
from training.data.samples import ImageSet, Splits

SIZE = 64


def _splits(shapes: list[tuple[float, float]], image_hw: tuple[int, int] = (SIZE, SIZE), label: int = 1) -> Splits:
    """One image per (width, height) box, boxes at the top-left corner; all in train, val empty."""
    images = [np.zeros((*image_hw, 3), np.uint8) for _ in shapes]
    boxes = [np.array([[0, 0, w, h]], np.float32) for w, h in shapes]
    train = ImageSet(images, np.full(len(shapes), label), boxes, [np.array([label]) for _ in shapes])
    empty = ImageSet([], np.zeros(0, np.int64), [], [])
    return Splits(train, empty, ["good", "scratch", "chip"])


def test_anchor_shapes_match_torchvision_anchor_generator():
    ratios, sizes = [0.2, 0.5, 1.0, 2.0], [8, 16, 32]
    generator = AnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=((*ratios,),) * len(sizes))
    cells = torch.cat(generator.cell_anchors).numpy()
    expected = np.stack([cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]], axis=1)
    # the anchors measured here are exactly the (width, height) torchvision's detectors use
    assert np.allclose(anchor_shapes(ratios, sizes), expected)


def test_best_anchor_iou_of_boxes_equal_to_anchors_is_one():
    anchors = anchor_shapes([0.5, 1.0, 2.0], [16, 32])
    # a box with an anchor's exact shape overlaps it fully (IoU 1): coverage counts it as matched
    assert np.allclose(best_anchor_iou(anchors, anchors), 1.0)


def test_box_stats_boxes_matching_anchors_have_no_misses():
    ratios, sizes = [0.5, 1.0, 2.0], [8, 16, 32]
    stats = box_stats(_splits([tuple(a) for a in anchor_shapes(ratios, sizes)]), SIZE, ratios, sizes)
    # every box is an anchor's shape: none is left without an anchor at IoU >= 0.5
    assert stats.count == 9 and stats.miss_share == 0.0


def test_box_stats_elongated_boxes_with_square_anchors_are_all_missed():
    shapes = [(40, 6), (30, 5), (50, 8), (20, 3)]  # h/w about 0.15
    stats = box_stats(_splits(shapes), SIZE, [1.0], [8, 16, 32])
    # flat boxes and only square anchors: no box reaches IoU 0.5 with any anchor
    assert stats.miss_share == 1.0 and stats.classes[0].miss_share == 1.0
    # adding a flat anchor ratio covers them
    assert box_stats(_splits(shapes), SIZE, [0.15, 1.0], [8, 16, 32]).miss_share < 0.5


def test_resized_boxes_follow_the_resize_of_a_non_square_image():
    # a 32 px wide, 128 px high image resized to 64x64: x doubles, y halves
    shapes, labels = resized_boxes(_splits([(10, 40)], image_hw=(128, 32)).train, SIZE)
    # so a 10x40 box (h/w 4) becomes 20x20 (h/w 1): what the anchors actually see
    assert np.allclose(shapes, [[20, 20]]) and labels.tolist() == [1]


def test_box_stats_per_class_median_histogram_and_sizes():
    ratios = [0.25, 0.4, 0.5, 0.5, 2.0]
    shapes = [(16 / np.sqrt(r), 16 * np.sqrt(r)) for r in ratios]  # sqrt(area) 16 px each
    stats = box_stats(_splits(shapes), SIZE, [1.0], [16])
    scratch = stats.classes[0]
    # one row per class that has boxes, named by the class list
    assert [c.name for c in stats.classes] == ["scratch"]
    # the median h/w and the histogram cover every box
    assert scratch.median_ratio == pytest.approx(0.5, rel=1e-3)
    assert scratch.histogram().sum() == len(ratios) and len(scratch.histogram()) == len(RATIO_EDGES) + 1
    # sizes are sqrt(area) in resized pixels
    assert all(v == pytest.approx(16, rel=1e-3) for v in stats.size_percentiles().values())


def test_box_stats_without_boxes_is_none():
    splits = _splits([])
    # data with no box at all has no statistics (the check prints no box section)
    assert box_stats(splits, SIZE, [1.0], [16]) is None


def test_suggest_ratio_range_brackets_the_ratio_percentiles():
    ratios = np.exp(np.random.default_rng(0).normal(np.log(0.45), 0.5, 2000))
    suggestion = suggest_ratio_range(ratios)
    p5, p95 = np.percentile(ratios, [5, 95])
    # the first ratio's range sits at the low tail, the last one's at the high tail
    assert suggestion.first[0] <= p5 <= suggestion.first[1] * 1.25
    assert suggestion.last[0] * 0.8 <= p95 <= suggestion.last[1]
    # the p5..p95 set steps by at most 2x and the count range includes its length
    centre = np.array(suggestion.centre)
    assert np.all(centre[1:] / centre[:-1] <= 2.0 * 1.05)
    assert suggestion.count[0] <= len(centre) <= suggestion.count[1]
    # the space entry is YAML naming the config key, with [lo, hi] ranges
    entry = yaml.safe_load(suggestion.space_entry())["model.anchor_ratios"]["geometric"]
    assert entry == {"min": list(suggestion.first), "max": list(suggestion.last), "count": list(suggestion.count)}


def test_suggest_ratio_range_of_uniform_ratios_is_still_a_range():
    suggestion = suggest_ratio_range(np.full(50, 0.5))
    # all boxes alike: the ranges are widened so they stay valid (lo < hi, first below last)
    assert suggestion.first[0] < suggestion.first[1] < suggestion.last[0] < suggestion.last[1]

