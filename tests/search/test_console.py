"""How searched keys are shortened for tables and progress lines."""

from __future__ import annotations

from search.console import short_keys


def test_short_keys_keep_the_last_part_when_it_is_unique():
    assert short_keys(["augment.brightness", "optim.lr"]) == ["brightness", "lr"]


def test_short_keys_keep_enough_parts_to_tell_keys_apart():
    keys = ["loss.rpn.focal_gamma", "loss.roi.focal_gamma", "loss.focal_gamma", "semi.thresholds.cls"]
    assert short_keys(keys) == ["rpn.focal_gamma", "roi.focal_gamma", "loss.focal_gamma", "cls"]
