"""Bootstrap intervals on hand-made outputs whose answer is known: a group's interval, the paired
difference of two groups, NaN-safety, determinism, and the seed-to-seed spread in the interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics.bootstrap import Estimate, interval, paired_difference


class Outputs:
    """A model that is right or wrong on each image; image i is a defect image when `defect[i]`."""

    def __init__(self, right: list[bool] | np.ndarray, defect: list[bool] | np.ndarray | None = None):
        self.right = np.asarray(right, dtype=bool)
        self.defect = np.ones(len(self.right), bool) if defect is None else np.asarray(defect, dtype=bool)
        self.calls = 0

    def __len__(self) -> int:
        return len(self.right)

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        self.calls += 1
        pick = np.arange(len(self)) if indices is None else indices
        right, defect = self.right[pick], self.defect[pick]
        missed = (~right & defect).sum() / defect.sum() if defect.any() else math.nan
        return {"accuracy": float(right.mean()), "miss_rate": float(missed)}


def pattern(n: int, right_share: float) -> np.ndarray:
    """n images, the first round(right_share * n) right."""
    return np.arange(n) < round(right_share * n)


def test_estimate_formats_as_value_and_interval():
    # a signed format spec applies to the value and both bounds
    assert f"{Estimate(0.031, -0.012, 0.074):+.3f}" == "+0.031 [-0.012, +0.074]"
    # no spec: three decimals
    assert f"{Estimate(0.5, 0.25, 0.75)}" == "0.500 [0.250, 0.750]"
    # holds: bounds included
    assert Estimate(0.0, 0.0, 0.0).holds(0.0) and not Estimate(0.1, 0.05, 0.2).holds(0.0)


def test_paired_difference_of_identical_models_is_exactly_zero():
    a, b = Outputs(pattern(50, 0.6)), Outputs(pattern(50, 0.6))
    result = paired_difference([a], [b], resamples=200)
    # the same images on both sides of every resample: every difference is 0, so is the interval
    for comparison in result.values():
        assert comparison.difference == Estimate(0.0, 0.0, 0.0)
        assert comparison.a_above == 0.0
    # and each side's own interval is the same
    assert result["accuracy"].a == result["accuracy"].b


def test_paired_difference_of_a_model_better_on_every_image_lies_above_zero():
    better, worse = Outputs(pattern(40, 0.9)), Outputs(pattern(40, 0.5))  # right on a superset of images
    comparison = paired_difference([better], [worse], resamples=300)["accuracy"]
    # pairing: every resample draws the same images for both, so better - worse > 0 on each
    assert comparison.difference.value == pytest.approx(0.4)
    assert comparison.difference.lo > 0 and comparison.a_above == 1.0


def test_interval_holds_the_estimate_and_narrows_with_more_images():
    small = interval([Outputs(pattern(20, 0.7))], resamples=500)["accuracy"]
    large = interval([Outputs(pattern(2000, 0.7))], resamples=500)["accuracy"]
    # the estimate is the metric on all the images, inside its interval
    assert small.value == pytest.approx(0.7) and small.holds(small.value) and large.holds(large.value)
    # 100x the images: the interval is about 10x narrower
    assert (large.hi - large.lo) < (small.hi - small.lo) / 5


def test_interval_narrows_at_a_lower_level():
    models = [Outputs(pattern(100, 0.7))]
    wide, narrow = interval(models, resamples=500, level=0.95)["accuracy"], interval(models, resamples=500, level=0.5)["accuracy"]
    assert narrow.hi - narrow.lo < wide.hi - wide.lo


def test_bootstrap_is_deterministic_for_a_seed():
    models = [Outputs(pattern(30, 0.5)), Outputs(pattern(30, 0.6))]
    # the same seed draws the same resamples: the same intervals
    assert interval(models, resamples=100, seed=3) == interval(models, resamples=100, seed=3)
    # another seed draws others
    assert interval(models, resamples=100, seed=3) != interval(models, resamples=100, seed=4)


def test_resampling_the_models_puts_the_seed_to_seed_spread_in_the_interval():
    always, never = Outputs(np.ones(30, bool)), Outputs(np.zeros(30, bool))
    # every image resample scores each model alike (1 and 0): only drawing the models moves the mean
    agreeing = interval([always, Outputs(np.ones(30, bool))], resamples=400)["accuracy"]
    disagreeing = interval([always, never], resamples=400)["accuracy"]
    assert agreeing == Estimate(1.0, 1.0, 1.0)
    assert disagreeing.value == 0.5 and disagreeing.lo == 0.0 and disagreeing.hi == 1.0


def test_a_metric_undefined_on_a_resample_is_left_out_of_its_distribution():
    # one defect image in 20: most resamples draw none, and their miss rate is undefined
    defect = np.arange(20) == 0
    missing = paired_difference([Outputs(np.ones(20, bool), defect)], [Outputs(np.arange(20) != 0, defect)], resamples=300)
    miss = missing["miss_rate"]
    # only the resamples holding the defect image count: a misses it never, b always
    assert miss.difference == Estimate(-1.0, -1.0, -1.0) and miss.a_above == 0.0
    # a metric undefined on every resample has no interval
    none = interval([Outputs(np.ones(10, bool), np.zeros(10, bool))], resamples=50)["miss_rate"]
    assert math.isnan(none.value) and math.isnan(none.lo) and math.isnan(none.hi)


def test_a_model_in_both_groups_is_scored_once_per_resample():
    shared = Outputs(pattern(10, 0.5))
    paired_difference([shared], [shared], resamples=50)
    # once per side on all the images, then once per resample
    assert shared.calls == 2 + 50


@pytest.mark.parametrize(
    "kwargs, message",
    [({"resamples": 0}, "resamples"), ({"level": 1.0}, "level"), ({"level": 0.0}, "level")],
)
def test_bootstrap_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        interval([Outputs(pattern(5, 0.5))], **kwargs)


def test_bootstrap_refuses_models_scored_on_different_images():
    with pytest.raises(ValueError, match="same"):
        paired_difference([Outputs(pattern(5, 0.5))], [Outputs(pattern(6, 0.5))])
