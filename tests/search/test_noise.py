"""Seed noise: spreads over seeds and when a curve has left chance level."""

from __future__ import annotations

import math

import pytest

from search.noise import MIN_GAP, Curve, describe, pooled_spread, spread


def test_spread_is_the_sample_standard_deviation_of_the_finite_values():
    # ddof 1 over the finite values only
    assert spread([1.0, 3.0, math.nan]) == pytest.approx(math.sqrt(2))
    # fewer than two values have no spread
    assert math.isnan(spread([0.5])) and math.isnan(spread([]))


def test_pooled_spread_weights_groups_by_their_degrees_of_freedom():
    sd, dof = pooled_spread([[1.0, 3.0], [0.0, 0.0, 3.0], [7.0]])
    # squared deviations 2 + 6 over 1 + 2 degrees of freedom; a one-run group adds nothing
    assert dof == 3 and sd == pytest.approx(math.sqrt(8 / 3))
    # no group of two: nothing measured
    assert math.isnan(pooled_spread([[1.0], [2.0]])[0])


def curve_of(runs: dict[str, list[float]]) -> Curve:
    curve = Curve()
    for run, values in runs.items():
        for epoch, value in enumerate(values, start=1):
            curve.add(run, epoch, value)
    return curve


@pytest.mark.parametrize(
    "runs, epoch, left",
    [
        ({"a": [0.11, 0.11, 0.30]}, 2, False),  # at chance through epoch 2
        ({"a": [0.11, 0.11, 0.30]}, 3, True),  # one run well above chance
        ({"a": [0.11 + MIN_GAP / 2]}, 1, False),  # above by less than the smallest gap counted
        ({"a": [0.20], "b": [0.11], "c": [0.11]}, 1, False),  # mean above chance but within twice its spread
        ({"a": [0.40], "b": [0.42], "c": [0.38]}, 1, True),  # clearly above, seeds agree
    ],
)
def test_curve_left_chance_needs_a_gap_beyond_twice_the_seed_spread(runs, epoch, left):
    assert curve_of(runs).left_chance(epoch, chance=0.11, sign=1.0) is left


def test_curve_left_chance_follows_the_metric_direction():
    # a loss leaves chance by falling
    assert curve_of({"a": [2.3, 1.2]}).left_chance(2, chance=2.3, sign=-1.0)
    assert not curve_of({"a": [2.3, 2.9]}).left_chance(2, chance=2.3, sign=-1.0)


def test_curve_noise_is_measured_per_epoch_once_two_runs_reached_it():
    curve = curve_of({"a": [0.1, 0.2], "b": [0.3]})
    assert curve.noise(1) == pytest.approx(spread([0.1, 0.3]))
    # only one run reached epoch 2
    assert math.isnan(curve.noise(2))


def test_describe_reads_as_plus_minus():
    assert describe(0.0312) == "+-0.031"
    assert describe(math.nan) == "not measured"
