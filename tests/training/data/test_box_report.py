"""The box statistics as console output (`training.data.box_report`): every part, and a pastable range."""

from __future__ import annotations


import numpy as np
import yaml

from training.data.box_report import box_report, ratio_bins
from training.data.box_stats import RATIO_EDGES, box_stats
from training.data.samples import ImageSet, Splits

SIZE = 64


def flat_and_square_boxes() -> Splits:
    """Flat scratches and square chips, one box an image, all in train."""
    shapes = [(40, 4), (30, 5), (36, 3), (12, 12), (10, 10), (14, 14)]
    labels = [1, 1, 1, 2, 2, 2]
    images = [np.zeros((SIZE, SIZE, 3), np.uint8) for _ in shapes]
    boxes = [np.array([[0, 0, w, h]], np.float32) for w, h in shapes]
    train = ImageSet(images, np.array(labels), boxes, [np.array([label]) for label in labels])
    return Splits(train, ImageSet([], np.zeros(0, np.int64), [], []), ["good", "scratch", "chip"])


def test_ratio_bins_label_every_histogram_bin():
    # one label per bin: below the first edge, between edges, and at or above the last
    assert len(ratio_bins()) == len(RATIO_EDGES) + 1
    assert ratio_bins()[0] == "< 0.2" and ratio_bins()[-1] == ">= 5"


def test_box_report_prints_ratios_sizes_coverage_and_a_pastable_range(rendered):
    text = rendered(box_report(box_stats(flat_and_square_boxes(), SIZE, [1.0], [8, 16]), ratios_searched=True))
    # per-class aspect ratios, the histogram, the sizes and the anchor coverage are all there
    parts = ("box aspect ratios (h/w)", "median h/w", "h/w histogram", "scratch", "box size sqrt(area)", "anchor coverage:")
    for part in parts:
        assert part in text, part
    # anchor_ratios is searched: the coverage is said to be for the base value
    assert "model.anchor_ratios is searched" in text
    # the suggestion is a flow-style space entry, printed verbatim (its brackets are not markup)
    line = next(line.strip() for line in text.splitlines() if line.strip().startswith("model.anchor_ratios: {geometric"))
    entry = yaml.safe_load(line)["model.anchor_ratios"]["geometric"]
    assert set(entry) == {"min", "max", "count"} and entry["min"][0] < 1 < entry["max"][1]


def test_box_report_without_searched_ratios_has_no_note(rendered):
    text = rendered(box_report(box_stats(flat_and_square_boxes(), SIZE, [1.0], [8, 16]), ratios_searched=False))
    # the base anchors are every trial's: no note
    assert "is searched" not in text
