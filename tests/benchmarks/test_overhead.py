"""benchmarks/overhead.py: the same configs by plain fit and through our search, at concurrency 1 and 2."""

from __future__ import annotations


def test_overhead_smoke_compares_plain_fit_with_the_search(run_benchmark):
    figures, stdout = run_benchmark("overhead")
    n = figures["configs"]
    # every config ran to its last epoch through the search, at both concurrencies
    assert figures["ours_concurrency1"]["finished_trials"] == n == figures["ours_concurrency2"]["finished_trials"]
    # the search's wall time splits into set-up, the trials' span and wrap-up
    c1 = figures["ours_concurrency1"]
    assert abs(c1["setup_s"] + c1["trials_span_s"] + c1["wrapup_s"] - c1["wall_s"]) < 0.5
    # plain training took real time, and the fixed start-up costs were measured
    assert figures["plain_sequential_s"] > 0 and figures["fixed_s"]["ray_init_s"] > 0 and figures["fixed_s"]["mlflow_setup_s"] > 0
    assert {"ratio_vs_ideal", "overhead_s_per_trial"} <= c1.keys()
    assert stdout.strip().splitlines()[-1].startswith("ratios:")
