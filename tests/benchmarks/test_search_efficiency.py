"""benchmarks/search_efficiency.py: five methods at an equal epoch budget, anytime curves and ratios."""

from __future__ import annotations

from pathlib import Path

METHODS = {"ours", "ours_hyperband", "ours_no_asha", "random", "optuna_hyperband"}


def test_search_efficiency_smoke_runs_every_method_within_the_budget(run_benchmark):
    figures, stdout = run_benchmark("search_efficiency")
    budget = figures["budget_epochs"]
    assert set(figures["methods"]) == METHODS
    for method, result in figures["methods"].items():
        # each method spent epochs, none counted past the budget, and its curve never goes down
        assert 0 < max(result["epochs_spent"]) <= budget, method
        curve = result["curve_mean"]
        assert len(curve) == budget and all(a <= b for a, b in zip(curve, curve[1:])), method
    # the target is 99% of the best any method found, and the best method reached it
    assert abs(figures["target"] - 0.99 * figures["best_found"]) < 1e-9
    assert any(r["reached_all_seeds"] for r in figures["methods"].values())
    # the anytime plot was written beside the JSON
    assert Path(figures["plot"]).is_file()
    assert {"random/ours", "optuna_hyperband/ours"} <= figures["ratios_epochs_to_target"].keys()
    assert stdout.strip().splitlines()[-1].startswith("ratios")
