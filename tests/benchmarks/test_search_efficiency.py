"""benchmarks/search_efficiency.py: six methods at an equal epoch budget, anytime curves, epochs to a
common target with a bootstrap interval, and the ratios to ours."""

from __future__ import annotations

import statistics
from pathlib import Path

import json

from benchmarks.search_efficiency import anytime, bootstrap_median, counted_epochs, merged

METHODS = {"ours", "ours_legacy", "tpe", "random", "random_asha", "optuna_hyperband"}  # the default set


def test_search_efficiency_smoke_runs_every_method_within_the_budget(run_benchmark):
    figures, stdout = run_benchmark("search_efficiency")
    budget = figures["budget_epochs"]
    assert set(figures["methods"]) == METHODS
    for method, result in figures["methods"].items():
        # each method spent epochs, and its median curve has one point per epoch it may spend (the budget;
        # random search goes on to the reference budget) and never goes down
        assert 0 < max(result["epochs_run"]), method
        curve = result["curve_median"]
        length = figures["reference_budget_epochs"] if method == "random" else budget
        assert len(curve) == length and all(a <= b for a, b in zip(curve, curve[1:])), method
        # the interval of the median epochs holds the median
        low, high = result["ci95_median_epochs"]
        assert low <= result["median_epochs_to_target"] <= high, method
    # the target is the median over methods and seeds of the final best, so some method reached it
    finals = [v for r in figures["methods"].values() for v in r["final_best"]]
    assert abs(figures["target"] - statistics.median(finals)) < 1e-9
    assert any(r["seeds_reached"] for r in figures["methods"].values())
    # the anytime plot was written beside the JSON; every other method has a ratio to ours
    assert Path(figures["plot"]).is_file()
    assert set(figures["ratios_epochs_to_target"]) == {f"{m}/ours" for m in METHODS - {"ours"}}
    assert stdout.strip().splitlines()[-1].startswith("ratios")


def test_a_seed_that_never_reaches_the_target_counts_the_epochs_it_ran():
    # reached at epoch 2; never reached in 3 epochs (a lower bound of 3); never reached in a longer run of 5
    assert counted_epochs([[0.1, 0.5, 0.6], [0.1, 0.2, 0.3], [0.1] * 5], 0.5) == [2, 3, 5]


def test_merge_reads_runs_from_before_the_renaming_under_todays_names(tmp_path):
    old = {"methods": {"ours": {"curves": [[0.1]], "trials": [1], "epochs_run": [1], "wall_s": 1.0},
                       "ours_hyperband": {"curves": [[0.2]], "trials": [1], "epochs_run": [1], "wall_s": 1.0}}}
    new = {"names": 2, "methods": {"ours": {"curves": [[0.3]], "trials": [1], "epochs_run": [1], "wall_s": 1.0}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    curves, _, _ = merged([tmp_path / "old.json", tmp_path / "new.json"])
    # the old 1-bracket "ours" is today's ours_1bracket; the old ours_hyperband (the default) is today's ours
    assert curves == {"ours_1bracket": [[0.1]], "ours": [[0.2], [0.3]]}


def test_anytime_scores_each_trial_by_its_moving_average():
    # one lucky epoch of a trial (0.9 after 0.1) counts as its moving average, 0.5, not as 0.9
    spend = [("a", 0.1), ("b", 0.3), ("a", 0.9)]
    assert anytime(spend, 4) == [0.1, 0.3, 0.5, 0.5]


def test_bootstrap_median_interval_brackets_the_seeds():
    import numpy as np

    low, high = bootstrap_median([10, 20, 30, 40, 50], np.random.default_rng(0))
    # the interval of the median lies within the observed values and contains the sample median
    assert 10 <= low <= 30 <= high <= 50
