"""search/score.py: which epochs stand for a trial under `search.score`."""

from __future__ import annotations

import math

import pytest

from search.score import EMA_WEIGHT, describe, scored_metrics

HISTORY = [
    {"epoch": 1, "val/f1": 0.2, "val/loss": 1.0},
    {"epoch": 2, "val/f1": 0.6, "val/loss": 0.9},
    {"epoch": 3, "val/f1": 0.4, "val/loss": 0.5},
]


def test_scored_metrics_last_is_the_last_epoch():
    # `last`: the last epoch's metrics, without the epoch number
    assert scored_metrics(HISTORY, "last", "val/f1", "max") == {"val/f1": 0.4, "val/loss": 0.5}


@pytest.mark.parametrize(("metric", "mode", "epoch"), [("val/f1", "max", 2), ("val/loss", "min", 3), ("val/f1", "min", 1)])
def test_scored_metrics_best_reads_every_metric_at_the_best_epoch(metric, mode, epoch):
    # `best`: the epoch best by the search metric in its mode, every metric read at that one epoch
    expected = {k: v for k, v in HISTORY[epoch - 1].items() if k != "epoch"}
    assert scored_metrics(HISTORY, "best", metric, mode) == expected


def test_scored_metrics_ema_averages_each_metric_over_epochs():
    # `ema`: newest epoch weighted EMA_WEIGHT, starting from the first epoch's value
    f1 = 0.2
    for value in (0.6, 0.4):
        f1 = EMA_WEIGHT * value + (1 - EMA_WEIGHT) * f1
    assert scored_metrics(HISTORY, "ema", "val/f1", "max")["val/f1"] == pytest.approx(f1)


def test_scored_metrics_skip_non_finite_values():
    history = [{"epoch": 1, "val/f1": 0.5}, {"epoch": 2, "val/f1": math.nan}]
    # a NaN epoch is never the best one and does not poison the average
    assert scored_metrics(history, "best", "val/f1", "max") == {"val/f1": 0.5}
    assert scored_metrics(history, "ema", "val/f1", "max") == {"val/f1": 0.5}


@pytest.mark.parametrize("rule", ["last", "best", "ema"])
def test_scored_metrics_of_no_epoch_is_empty(rule):
    # a trial that reported nothing has no score under any rule, and every rule says what it is
    assert scored_metrics([], rule, "val/f1", "max") == {}
    assert describe(rule).startswith(rule)


def test_space_file_score_is_checked(minimal_space, write_space):
    from search.spec import load_plan
    from training.schema.errors import ConfigError

    minimal_space["search"] = {"score": "median"}
    # an unknown rule is a user error naming search.score, caught when the file is loaded
    with pytest.raises(ConfigError) as info:
        load_plan(write_space(minimal_space))
    assert info.value.key == "search.score"
    # and the default is the moving average
    del minimal_space["search"]
    assert load_plan(write_space(minimal_space)).spec.search.score == "ema"
